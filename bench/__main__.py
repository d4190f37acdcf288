"""``python -m bench`` (what ``make bench`` runs); see bench/README.md.

``python -m bench --store [OPTIONS]`` runs the store benchmark (bench/store_bench.py) instead.
"""

import sys

from bench.runner import main

if sys.argv[1:2] == ["--store"]:
    from bench.store_bench import main as store_main

    raise SystemExit(store_main(sys.argv[2:]))
raise SystemExit(main())
