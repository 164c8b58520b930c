import sys
from pathlib import Path

# The client is its own package (client/); the tests use it from the checkout.
CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"
if str(CLIENT_DIR) not in sys.path:
    sys.path.insert(0, str(CLIENT_DIR))
