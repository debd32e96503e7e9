"""How the stack serves the chat page (web/): its files, its npm packages from web/node_modules, a
config.js with this stack's URL and anon key, a policy that lets scripts come only from here;
the gateway answers the page's cross-origin calls; without Node the stack says why there is no
page."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import httpx
import pytest

from devstack.stack import LocalStack
from devstack.web_packages import VENDORED, WEB_DIR, install_web_packages


@pytest.fixture
def page_url(chat_page_url: str) -> str:
    return chat_page_url


def test_the_status_names_the_chat_page(stack: LocalStack, page_url: str) -> None:
    assert f"   Chat page URL: {page_url}" in stack.status_text().splitlines()


def test_config_carries_the_stacks_url_and_anon_key(stack: LocalStack, page_url: str) -> None:
    assert stack.keys is not None
    config = httpx.get(f"{page_url}/config.js")
    assert config.status_code == 200 and config.headers["content-type"].startswith("text/javascript")
    assert f'"supabaseUrl": "{stack.api_url}"' in config.text
    assert f'"supabaseAnonKey": "{stack.keys.api_key("anon")}"' in config.text
    assert stack.keys.api_key("service_role") not in config.text


@pytest.mark.parametrize("path", ["/", "/src/main.js", "/src/reply-stream.js", "/src/markdown.js",
                                  "/vendor/supabase-js.mjs", "/vendor/supabase.js", "/style.css"])
def test_the_pages_files_are_served(page_url: str, path: str) -> None:
    response = httpx.get(page_url + path)
    assert response.status_code == 200 and response.content


def test_supabase_js_comes_from_the_lockfiles_version(page_url: str) -> None:
    served = httpx.get(f"{page_url}/vendor/supabase.js").content
    lock = (WEB_DIR / "package-lock.json").read_text()
    assert served == (WEB_DIR / "node_modules/@supabase/supabase-js/dist/umd/supabase.js").read_bytes()
    assert '"node_modules/@supabase/supabase-js": {\n      "version": "2.119.1"' in lock


@pytest.mark.parametrize("name", sorted(VENDORED))
def test_each_vendored_package_file_is_served_as_npm_installed_it(page_url: str, name: str) -> None:
    served = httpx.get(f"{page_url}/vendor/{name}")
    assert served.headers["content-type"].startswith("text/javascript")
    assert served.content == (WEB_DIR / "node_modules" / VENDORED[name]).read_bytes()


def test_the_import_map_names_only_vendored_files(page_url: str) -> None:
    """Every bare import in the page's modules resolves, through the import map, to a file served here."""
    index = httpx.get(page_url).text
    imports = json.loads(index.split('<script type="importmap">', 1)[1].split("</script>", 1)[0])["imports"]
    assert imports == {"@supabase/supabase-js": "./vendor/supabase-js.mjs", "marked": "./vendor/marked.js",
                       "dompurify": "./vendor/dompurify.js", "highlight.js/": "./vendor/highlight.js/"}
    bare = set(re.findall(r"^import .* from '([^./][^']*)'$", (WEB_DIR / "src" / "markdown.js").read_text(), re.M))
    assert {"marked", "dompurify", "highlight.js/core.js", "highlight.js/languages/python.js"} <= bare
    for specifier in bare:
        prefix = max((key for key in imports if specifier == key or (key.endswith("/") and specifier.startswith(key))),
                     key=len)
        url = imports[prefix].removeprefix(".") + specifier.removeprefix(prefix)
        assert httpx.get(page_url + url).status_code == 200, specifier


def test_scripts_may_come_only_from_the_page_and_talk_only_to_supabase(stack: LocalStack, page_url: str) -> None:
    policy = httpx.get(page_url).headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"].startswith("'self' 'sha256-") and "unsafe-inline" not in policy
    assert directives["connect-src"] == f"'self' {stack.api_url} {stack.realtime_url.removesuffix('/realtime/v1')}"
    assert directives["object-src"] == "'none'"


def test_the_gateway_answers_the_pages_cross_origin_calls(stack: LocalStack, page_url: str) -> None:
    preflight = httpx.options(f"{stack.api_url}/rest/v1/messages", headers={
        "Origin": page_url, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "apikey,authorization,content-type,prefer,x-client-info",
    })
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", page_url)
    assert "prefer" in preflight.headers["access-control-allow-headers"].lower()
    assert stack.keys is not None
    answer = httpx.get(f"{stack.api_url}/auth/v1/health", headers={"Origin": page_url, "apikey": stack.keys.api_key("anon")})
    assert answer.headers["access-control-allow-origin"] == "*"


def test_without_node_there_is_no_page_and_the_reason_says_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    web = tmp_path / "web"
    shutil.copytree(WEB_DIR, web, ignore=shutil.ignore_patterns("node_modules"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))
    packages = install_web_packages(web)
    assert packages.vendored == {}
    assert packages.missing is not None and "needs Node" in packages.missing
