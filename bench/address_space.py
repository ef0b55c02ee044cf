"""Address space against resident memory of one rendering process: why MemorySize is watched as resident.

Each measurement runs in a fresh process, the function's imports first, then one render of a 12 MP photo:
VmPeak (the most address space it held) and VmHWM (the most it had resident) from /proc/self/status,
beside the template's MemorySize. The anime row needs the dev model (`atelier models build-dev`).

    .venv/bin/python bench/address_space.py
"""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import atelier, numpy as np, sys
style = sys.argv[1]
img = (np.random.default_rng(0).random((3000, 4000, 3)) * 255).astype(np.uint8)
if style == "anime":
    import atelier.entrypoints.lambda_anime
    from atelier.inference import anime, models
    model = anime.load_model(models.installed_path("animeganv2-dev"), max_side=1024, provider="cpu")
    model.stylize(img, 1024)
else:
    import atelier.entrypoints.lambda_style
    from atelier.imaging import styles
    styles.get(style).render(img)
fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(fields["VmPeak"].split()[0]) >> 10, int(fields["VmHWM"].split()[0]) >> 10)
"""
MEMORY_SIZE = {"sketch": 1769, "oil": 1769, "anime": 3008}  # template.yaml's StyleSizing, MiB


def main() -> int:
    print("| function | MemorySize MiB | peak address space MiB | peak resident MiB |")
    print("|---|---:|---:|---:|")
    for style, memory in MEMORY_SIZE.items():
        out = subprocess.run([sys.executable, "-c", CHILD, style], capture_output=True, text=True, check=True)
        peak, resident = out.stdout.split()
        print(f"| {style} | {memory} | {peak} | {resident} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
