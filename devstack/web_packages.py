"""supabase-js for the chat page (web/), from the npm registry through web/'s lockfile into its
ignored node_modules/: installed once with `npm ci`, again only when the lockfile changes.
Without Node there is no page, and the rest of the stack runs anyway."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
SUPABASE_JS_BUILD = Path("node_modules/@supabase/supabase-js/dist/umd/supabase.js")


@dataclass(frozen=True)
class WebPackages:
    """Where the page's files are, or why there is no page (`missing` says what to do)."""

    web_dir: Path
    supabase_js: Path | None
    missing: str | None = None


def install_web_packages(web_dir: Path = WEB_DIR, timeout_seconds: float = 300) -> WebPackages:
    """`npm ci` in web/ when node_modules is absent or older than the lockfile."""
    built = web_dir / SUPABASE_JS_BUILD
    marker = web_dir / "node_modules" / ".package-lock.json"
    lockfile = web_dir / "package-lock.json"
    if built.exists() and marker.exists() and marker.stat().st_mtime >= lockfile.stat().st_mtime:
        return WebPackages(web_dir, built)
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return WebPackages(web_dir, None, "the chat page needs Node 20+ and npm (to install supabase-js from npm)")
    try:
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=web_dir,
                                capture_output=True, text=True, timeout=timeout_seconds, check=False)
    except subprocess.TimeoutExpired:
        slow = f"`npm ci` in {web_dir} took over {timeout_seconds:.0f} s (is the npm registry reachable?)"
        return WebPackages(web_dir, None, slow)
    if result.returncode != 0 or not built.exists():
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return WebPackages(web_dir, None, f"`npm ci` in {web_dir} failed: {reason}")
    return WebPackages(web_dir, built)
