"""mkdocs hooks (mkdocs.yml `hooks:`): the generated parts of the docs site.

- A page line `<!-- generated:strategies -->` or `<!-- generated:tasks -->` becomes the reference
  of every registered strategy or task (family, docstring, suite parameters with their defaults
  and domains), rendered at build time from hobench.registry by tools/readme_figures.py, so the
  pages cannot drift from the code.
- The committed results' figures (results/**/*.png) are added to the site under `results/`, so a
  page links them as `results/...` and `mkdocs build --strict` checks those links.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent  # tools/ is one level down
MARKERS = ("strategies", "tasks")


def _figures_module():
    path = ROOT / "tools" / "readme_figures.py"
    spec = importlib.util.spec_from_file_location("readme_figures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_files(files, config):
    for path in sorted((ROOT / "results").glob("**/*.png")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("results/local/"):
            continue  # this machine's own runs, never linked
        files.append(File(relative, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    for kind in MARKERS:
        marker = f"<!-- generated:{kind} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, _figures_module().registry_reference(kind))
    return markdown
