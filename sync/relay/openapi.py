"""The relay's OpenAPI 3.1 document, served at /v1/openapi.json and committed as
docs/relay-openapi.json: regenerate it with ``python -m sync.relay.openapi``.

Built from the protocol's defaults, not from one relay's settings, so every
relay serves the same document and the committed file can be compared with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from crypto.receipts import RECEIPT_BYTES
from sync.relay.settings import RelaySettings

Json = dict[str, Any]

_D: Final = RelaySettings(data_dir=Path())  # the defaults only
ERROR_CODES: Final = {
    400: "bad-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    416: "range-not-satisfiable",
    422: "hash-mismatch",
    500: "internal",
    507: "relay-full",
}
_WHY: Final = {
    400: "Malformed headers, query or body.",
    401: "Missing, malformed or wrong token, or a token of the wrong role (always the same).",
    404: "Unknown, or not a valid name (never a file-system lookup).",
    409: "Conflicts with what is stored.",
    413: "Above a limit; nothing was stored.",
    415: "The body is not application/offset+octet-stream.",
    416: "The range starts at or after the end of the blob.",
    422: "The bytes do not hash to the id; the upload was discarded.",
    507: "Too many unfinished uploads, or no space.",
}
_UINT: Final = {"type": "string", "pattern": "^(0|[1-9][0-9]{0,18})$"}
_UPLOAD_AUTH: Final[list[Json]] = [{"uploadToken": []}, {"hqToken": []}]
_HQ_AUTH: Final[list[Json]] = [{"hqToken": []}]


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _header(description: str, schema: Json | None = None) -> Json:
    return {"description": description, "required": True, "schema": schema or _UINT}


def _tus_headers(**more: Json) -> Json:
    return {"Tus-Resumable": _ref("headers", "TusResumable"), **more}


def _errors(*statuses: int, tus: bool = False) -> Json:
    responses: Json = {}
    for status in statuses:
        response: Json = {
            "description": _WHY[status],
            "content": {"application/json": {"schema": _ref("schemas", "Error")}},
        }
        if status == 401:
            response["headers"] = {"WWW-Authenticate": _header("Bearer", {"const": "Bearer"})}
        if status == 416:
            response["headers"] = {"Content-Range": _header("bytes */<size>", {"type": "string"})}
        if tus:
            response["headers"] = {**response.get("headers", {}), **_tus_headers()}
        responses[str(status)] = response
    return responses


def _json(description: str, schema: Json) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _octets(description: str) -> Json:
    return {"content": {"application/octet-stream": {"schema": {}}}, "description": description}


def _param(name: str, where: str, schema: Json, description: str, *, required: bool = True) -> Json:
    return {
        "name": name,
        "in": where,
        "required": required,
        "schema": schema,
        "description": description,
    }


_BLOB_ID: Final = _ref("parameters", "BlobId")
_TUS: Final = _ref("parameters", "TusResumable")


def _uploads() -> Json:
    location = _header("/v1/uploads/<id>", {"type": "string"})
    return {
        "post": {
            "operationId": "createUpload",
            "summary": "Create (or find again) the upload of a blob",
            "security": _UPLOAD_AUTH,
            "parameters": [
                _TUS,
                _param(
                    "Upload-Length",
                    "header",
                    {"type": "integer", "minimum": 1, "maximum": _D.max_blob_bytes},
                    "The blob's size in bytes.",
                ),
                _param(
                    "Upload-Metadata",
                    "header",
                    {"type": "string", "pattern": "^sha256 [A-Za-z0-9+/]{86}==$"},
                    "`sha256 ` and the base64 of the blob's 64 lowercase hex digits.",
                ),
            ],
            "responses": {
                "200": {
                    "description": "The blob is complete already.",
                    "headers": _tus_headers(**{"Upload-Offset": _header("= Upload-Length")}),
                },
                "201": {
                    "description": "Created, or it existed: resume at Upload-Offset.",
                    "headers": _tus_headers(
                        **{"Upload-Offset": _header("Where to resume."), "Location": location}
                    ),
                },
                **_errors(400, 401, 409, 413, 507, tus=True),
            },
        }
    }


def _upload() -> Json:
    return {
        "parameters": [_BLOB_ID, _TUS],
        "head": {
            "operationId": "uploadOffset",
            "summary": "Where to resume an upload (a complete blob: offset = length)",
            "security": _UPLOAD_AUTH,
            "responses": {
                "200": {
                    "description": "The stored offset.",
                    "headers": _tus_headers(
                        **{
                            "Upload-Offset": _header("Bytes stored."),
                            "Upload-Length": _header("The blob's size."),
                            "Cache-Control": _header("no-store", {"const": "no-store"}),
                        }
                    ),
                },
                **_errors(400, 401, 404, tus=True),
            },
        },
        "patch": {
            "operationId": "appendUpload",
            "summary": "Append bytes at Upload-Offset; the last PATCH checks the SHA-256",
            "security": _UPLOAD_AUTH,
            "parameters": [
                _param(
                    "Upload-Offset",
                    "header",
                    {"type": "integer", "minimum": 0, "maximum": _D.max_blob_bytes},
                    "Must be the stored offset.",
                )
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/offset+octet-stream": {"schema": {}},
                },
            },
            "responses": {
                "204": {
                    "description": "Stored and fsynced; the blob is complete when offset = length.",
                    "headers": _tus_headers(**{"Upload-Offset": _header("The new offset.")}),
                },
                **_errors(400, 401, 404, 409, 413, 415, 422, 507, tus=True),
            },
        },
    }


def _blobs() -> Json:
    blob = {
        "type": "object",
        "required": ["id", "size", "stored_at"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "size": {"type": "integer", "minimum": 1},
            "stored_at": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$"},
        },
    }
    listing = {
        "type": "object",
        "required": ["blobs", "more"],
        "additionalProperties": False,
        "properties": {"blobs": {"type": "array", "items": blob}, "more": {"type": "boolean"}},
    }
    after = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    limit = {"type": "integer", "minimum": 1, "maximum": _D.max_list_limit}
    return {
        "get": {
            "operationId": "listBlobs",
            "summary": "Complete blobs, by id",
            "security": _HQ_AUTH,
            "parameters": [
                _param("after", "query", after, "Only ids above this one.", required=False),
                _param(
                    "limit", "query", limit, "At most this many (default 1000).", required=False
                ),
            ],
            "responses": {"200": _json("One page of blobs.", listing), **_errors(400, 401)},
        }
    }


def _blob() -> Json:
    whole = _octets("The whole blob.")
    whole["headers"] = {
        "Content-Length": _header("Its size."),
        "Accept-Ranges": _header("bytes", {"const": "bytes"}),
    }
    part = _octets("The bytes of the range.")
    part["headers"] = {
        "Content-Length": _header("Bytes sent."),
        "Content-Range": _header("bytes a-b/size", {"type": "string"}),
    }
    return {
        "parameters": [_BLOB_ID],
        "get": {
            "operationId": "getBlob",
            "summary": "Download a complete blob (Range: bytes=a- resumes)",
            "security": _HQ_AUTH,
            "parameters": [
                _param(
                    "Range",
                    "header",
                    {"type": "string", "pattern": "^bytes=[0-9]{1,12}-$"},
                    "Resume from byte a.",
                    required=False,
                )
            ],
            "responses": {"200": whole, "206": part, **_errors(401, 404, 416)},
        },
        "delete": {
            "operationId": "deleteBlob",
            "summary": "Delete a blob (idempotent)",
            "security": _HQ_AUTH,
            "responses": {"204": {"description": "Gone."}, **_errors(401, 404)},
        },
    }


def _receipts() -> Json:
    after = _param(
        "after", "query", {"type": "integer", "minimum": 0}, "Cursor (0 to start).", required=False
    )
    fetched = _octets(
        f"Concatenated {RECEIPT_BYTES}-byte receipts, at most {_D.max_receipts_per_get}."
    )
    fetched["headers"] = {
        "Receipts-Cursor": _header("Pass as `after` next time."),
        "Receipts-More": _header("1 if more are waiting.", {"enum": ["0", "1"]}),
    }
    stored = {
        "type": "object",
        "required": ["stored"],
        "additionalProperties": False,
        "properties": {"stored": {"type": "integer", "minimum": 0}},
    }
    body = {
        "required": True,
        "content": {"application/octet-stream": {"schema": {}}},
    }
    return {
        "post": {
            "operationId": "publishReceipts",
            "summary": f"Publish 1 to {_D.max_receipts_per_post} receipts of {RECEIPT_BYTES} bytes",
            "security": _HQ_AUTH,
            "requestBody": body,
            "responses": {
                "200": _json("How many were new (each bundle id is kept once).", stored),
                **_errors(400, 401, 413),
            },
        },
        "get": {
            "operationId": "fetchReceipts",
            "summary": "Receipts published after a cursor",
            "security": _UPLOAD_AUTH,
            "parameters": [after],
            "responses": {"200": fetched, **_errors(400, 401)},
        },
    }


def _statements() -> Json:
    listing = {
        "type": "object",
        "required": ["statements"],
        "additionalProperties": False,
        "properties": {"statements": {"type": "array", "items": {"type": "string"}}},
    }
    after = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
    return {
        "get": {
            "operationId": "fetchStatements",
            "summary": "HQ key statements after a version, in order (base64)",
            "security": _UPLOAD_AUTH,
            "parameters": [
                _param("after", "query", after, "A version (0 to start).", required=False)
            ],
            "responses": {"200": _json("The statements.", listing), **_errors(400, 401)},
        }
    }


def _statement() -> Json:
    version = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    body = {
        "required": True,
        "content": {"application/octet-stream": {"schema": {}}},
    }
    return {
        "put": {
            "operationId": "publishStatement",
            "summary": f"Publish one statement (1 to {_D.max_statement_bytes} bytes)",
            "security": _HQ_AUTH,
            "parameters": [_param("version", "path", version, "The statement's version.")],
            "requestBody": body,
            "responses": {
                "204": {"description": "Stored (or the same bytes were stored already)."},
                **_errors(400, 401, 404, 409, 413),
            },
        }
    }


def _upload_token() -> Json:
    rotation = {
        "type": "object",
        "required": ["token_sha256", "notice"],
        "additionalProperties": False,
        "properties": {
            "token_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "notice": {
                "type": "string",
                "contentEncoding": "base64",
                "description": "The signed notice (docs/token-notice.md).",
            },
        },
    }
    return {
        "get": {
            "operationId": "fetchUploadTokenNotice",
            "summary": "HQ's latest signed notice of the upload token (docs/token-notice.md)",
            "security": _UPLOAD_AUTH,
            "responses": {"200": _octets("The notice's bytes."), **_errors(401, 404)},
        },
        "put": {
            "operationId": "rotateUploadToken",
            "summary": "Make a new upload token current; the older ones end with its grace",
            "security": _HQ_AUTH,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": rotation}},
            },
            "responses": {
                "204": {"description": "Stored (or the same rotation was stored already)."},
                **_errors(400, 401, 409, 413),
            },
        },
    }


def _components() -> Json:
    error = {
        "type": "object",
        "required": ["error", "message"],
        "additionalProperties": False,
        "properties": {
            "error": {"enum": sorted(set(ERROR_CODES.values()))},
            "message": {"type": "string"},
        },
    }
    health = {
        "type": "object",
        "required": ["status", "protocol"],
        "additionalProperties": False,
        "properties": {"status": {"const": "ok"}, "protocol": {"const": 1}},
    }
    bearer = {"type": "http", "scheme": "bearer"}
    return {
        "schemas": {"Error": error, "Health": health},
        "securitySchemes": {
            "uploadToken": {**bearer, "description": "The deployment's upload token."},
            "hqToken": {**bearer, "description": "HQ's token."},
        },
        "parameters": {
            "BlobId": _param(
                "blob_id",
                "path",
                {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "Lowercase hex SHA-256 of the blob's bytes.",
            ),
            "TusResumable": _param("Tus-Resumable", "header", {"const": "1.0.0"}, "tus version."),
        },
        "headers": {"TusResumable": _header("tus version", {"const": "1.0.0"})},
    }


def openapi_document() -> Json:
    """The OpenAPI 3.1 document of protocol version 1."""
    no_auth: list[Json] = []
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fieldapp relay",
            "version": "1",
            "description": "Stores and forwards opaque blobs, HQ's receipts and key statements. "
            "The contract is docs/relay-protocol.md.",
        },
        "paths": {
            "/v1/health": {
                "get": {
                    "operationId": "health",
                    "security": no_auth,
                    "responses": {"200": _json("Up.", _ref("schemas", "Health"))},
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "security": no_auth,
                    "responses": {"200": _json("This document.", {"type": "object"})},
                }
            },
            "/v1/uploads": _uploads(),
            "/v1/uploads/{blob_id}": _upload(),
            "/v1/blobs": _blobs(),
            "/v1/blobs/{blob_id}": _blob(),
            "/v1/receipts": _receipts(),
            "/v1/statements": _statements(),
            "/v1/statements/{version}": _statement(),
            "/v1/upload-token": _upload_token(),
        },
        "components": _components(),
    }


def document_text() -> str:
    """The committed file's exact text."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    (Path(__file__).resolve().parents[2] / "docs" / "relay-openapi.json").write_text(
        document_text()
    )
