"""The domain model: testimonies, their values, the violation vocabulary, the codec.

Pure: no database, no UI, no cryptography; the only I/O is reading the packaged
vocabulary file. Everything it raises is a ``DomainError``, with a message safe
to show as is. See docs/domain.md.
"""

from fieldapp.domain._text import ascii_digits
from fieldapp.domain.codec import (
    canonical_bytes,
    dump_canonical,
    identity_from_json,
    identity_to_json,
    testimony_from_bytes,
    testimony_from_json,
    testimony_to_json,
)
from fieldapp.domain.consent import Consent, ConsentScope
from fieldapp.domain.dates import IncidentDate, PartialDate
from fieldapp.domain.errors import (
    DomainError,
    FieldProblem,
    UnknownTerm,
    ValidationError,
    VocabularyError,
)
from fieldapp.domain.model import (
    ALLOWED_TRANSITIONS,
    AttachmentRef,
    Perpetrator,
    ProtectedIdentity,
    Reliability,
    SourceType,
    Status,
    Testimony,
    Victims,
    can_transition,
    check_transition,
)
from fieldapp.domain.place import Place, parse_coordinate
from fieldapp.domain.validation import (
    structural_problems,
    testimony_problems,
    validate_identity,
    validate_testimony,
)
from fieldapp.domain.vocabulary import Term, Vocabulary
from fieldapp.domain.witness import is_witness_code, new_witness_code, parse_witness_code

__all__ = [
    "ALLOWED_TRANSITIONS",
    "AttachmentRef",
    "Consent",
    "ConsentScope",
    "DomainError",
    "FieldProblem",
    "IncidentDate",
    "PartialDate",
    "Perpetrator",
    "Place",
    "ProtectedIdentity",
    "Reliability",
    "SourceType",
    "Status",
    "Term",
    "Testimony",
    "UnknownTerm",
    "ValidationError",
    "Victims",
    "Vocabulary",
    "VocabularyError",
    "ascii_digits",
    "can_transition",
    "canonical_bytes",
    "check_transition",
    "dump_canonical",
    "identity_from_json",
    "identity_to_json",
    "is_witness_code",
    "new_witness_code",
    "parse_coordinate",
    "parse_witness_code",
    "structural_problems",
    "testimony_from_bytes",
    "testimony_from_json",
    "testimony_problems",
    "testimony_to_json",
    "validate_identity",
    "validate_testimony",
]
