"""``python -m mrcnn.serve``: see :mod:`mrcnn.serve.deployment`."""
import sys

from mrcnn.serve.deployment import main

sys.exit(main())
