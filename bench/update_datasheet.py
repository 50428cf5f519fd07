"""Regenerate the numbers in data/README.md between the GENERATED markers from the collection itself.

    python bench/update_datasheet.py            # after committing new collection progress
"""

import pathlib
import re
import subprocess
import sys

root = pathlib.Path(__file__).resolve().parent.parent
sheet = root / "data" / "README.md"
numbers = subprocess.run([sys.executable, "-m", "xfer_jax.cli", "datasheet", str(root / "data/v1/raw")],
                         capture_output=True, text=True, check=True).stdout.strip()
info = subprocess.run([sys.executable, "-m", "xfer_jax.cli", "info", str(root / "data/v1/dataset")],
                      capture_output=True, text=True).stdout.strip()
block = f"<!-- GENERATED -->\n{numbers}\n\nFeaturized dataset (`xfer-jax info data/v1/dataset`):\n\n```\n{info}\n```\n<!-- /GENERATED -->"
text = sheet.read_text()
sheet.write_text(re.sub(r"<!-- GENERATED -->.*<!-- /GENERATED -->", block, text, flags=re.S))
print(block)
