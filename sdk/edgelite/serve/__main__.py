import sys

from .cli import container_main

sys.exit(container_main())
