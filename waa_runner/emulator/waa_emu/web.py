"""Port 8006: dockur's nginx: the status page during boot, then noVNC (waa-facts §4 steps 1 and 3)."""
from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlparse

from .config import DOCKUR_VERSION
from .httpbase import state_of

STATUS_PAGE = """<!DOCTYPE html>
<html>
    <head>
        <title>Windows</title>
        <meta http-equiv="Cache-Control" content="no-cache" />
        <meta name="viewport" content="width=device-width, initial-scale=1.0" />
    </head>
    <body>
        <div id="page">
            <div id="content"><h1 id="info">{body}</h1></div>
            <footer id="footer">Windows for Docker v{version}<br />
                <a href="https://github.com/dockur/windows">https://github.com/dockur/windows</a></footer>
        </div>
        <script type="text/javascript">/* polls /msg.html; reloads into noVNC when it answers 404 */</script>
    </body>
</html>
"""
NOVNC_PAGE = """<!DOCTYPE html>
<html lang="en" class="noVNC_loading">
<head>
    <title>noVNC</title>
    <meta charset="utf-8">
</head>
<body>
    <div id="noVNC_container"><!-- the WAA emulator serves no VNC stream --></div>
</body>
</html>
"""
NGINX_404 = """<html>
<head><title>404 Not Found</title></head>
<body>
<center><h1>404 Not Found</h1></center>
<hr><center>nginx</center>
</body>
</html>
"""
NOVNC_PATHS = ("/", "/vnc.html", "/vnc_lite.html")


def html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def msg_html(step: str) -> str:
    """dockur's html(): a step ending in "..." is shown as a loading paragraph."""
    body = html_escape(step)
    if body.endswith("..."):
        body = f'<p class="loading">{body[:-3]}</p>'
    return body


def route(status_page: bool, step: str, path: str, redirect: bool) -> tuple[int, str, dict[str, str]]:
    """(status, body, extra headers) of one request, from what the machine is doing."""
    url = urlparse(path)
    if status_page:
        if url.path == "/msg.html":
            return 200, msg_html(step) + "\n", {}
        return 200, STATUS_PAGE.format(body=msg_html(step), version=DOCKUR_VERSION), {}
    if url.path == "/" and not url.query and redirect:  # nginx.conf of dockur/qemus since 2024-01
        return 301, "<html><head><title>301 Moved Permanently</title></head></html>\n", {
            "Location": "/?resize=scale&autoconnect=true"}
    if url.path in NOVNC_PATHS:
        return 200, NOVNC_PAGE, {}
    return 404, NGINX_404, {}  # /msg.html included: dockur deleted it when QEMU started


class WebHandler(BaseHTTPRequestHandler):
    server_version = "nginx"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 120

    def log_message(self, format: str, *args: Any) -> None:  # the real nginx logs to /dev/null
        pass

    def _answer(self, head: bool) -> None:
        state = state_of(self)
        status, body, extra = route(state.machine.status_page, state.machine.step, self.path,
                                    state.settings.novnc_redirect)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)
