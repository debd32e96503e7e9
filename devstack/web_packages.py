"""The chat page's npm packages (web/): installed from the npm registry through web/'s lockfile into
its ignored node_modules/ with `npm ci`, once, and again only when the lockfile changes. The page
loads each package's own browser build, served as is from /vendor/ (no bundler, no CDN). Without
Node there is no page, and the rest of the stack runs anyway."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
HIGHLIGHT_LANGUAGES = ("bash", "css", "diff", "javascript", "json", "python", "sql", "typescript", "xml", "yaml")
# Served as /vendor/<name> -> the file in web/node_modules. index.html's import map names them.
VENDORED = {
    "supabase.js": "@supabase/supabase-js/dist/umd/supabase.js",
    "marked.js": "marked/lib/marked.esm.js",
    "dompurify.js": "dompurify/dist/purify.es.mjs",
    "highlight.js/core.js": "@highlightjs/cdn-assets/es/core.min.js",
    **{f"highlight.js/languages/{language}.js": f"@highlightjs/cdn-assets/es/languages/{language}.min.js"
       for language in HIGHLIGHT_LANGUAGES},
}


@dataclass(frozen=True)
class WebPackages:
    """The page's vendored files by the name it loads them as, or why there is no page (`missing`
    says what to do, and `vendored` is empty)."""

    web_dir: Path
    vendored: dict[str, Path] = field(default_factory=dict)
    missing: str | None = None


def install_web_packages(web_dir: Path = WEB_DIR, timeout_seconds: float = 300) -> WebPackages:
    """`npm ci` in web/ when a vendored file is absent or node_modules is older than the lockfile."""
    vendored = {name: web_dir / "node_modules" / path for name, path in VENDORED.items()}
    marker = web_dir / "node_modules" / ".package-lock.json"
    lockfile = web_dir / "package-lock.json"
    installed = all(path.exists() for path in vendored.values())
    if installed and marker.exists() and marker.stat().st_mtime >= lockfile.stat().st_mtime:
        return WebPackages(web_dir, vendored)
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return WebPackages(web_dir, missing="the chat page needs Node 20+ and npm (to install its packages from npm)")
    try:
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=web_dir,
                                capture_output=True, text=True, timeout=timeout_seconds, check=False)
    except subprocess.TimeoutExpired:
        slow = f"`npm ci` in {web_dir} took over {timeout_seconds:.0f} s (is the npm registry reachable?)"
        return WebPackages(web_dir, missing=slow)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return WebPackages(web_dir, missing=f"`npm ci` in {web_dir} failed: {reason}")
    absent = [VENDORED[name] for name, path in vendored.items() if not path.exists()]
    if absent:
        return WebPackages(web_dir, missing=f"`npm ci` in {web_dir} left out {', '.join(absent)}")
    return WebPackages(web_dir, vendored)
