"""`python -m sandzmq.actors {raft,log,apply} --config FILE --node ID`: see process.py."""

import sys

from sandzmq.actors.process import main

sys.exit(main())
