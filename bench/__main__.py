"""``python -m bench`` (what ``make bench`` runs); see bench/README.md."""

from bench.runner import main

raise SystemExit(main())
