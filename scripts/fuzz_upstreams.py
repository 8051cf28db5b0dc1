#!/usr/bin/env python3
"""The external services tidelog calls, on loopback, for scripts/fuzz.sh:
a GrsAI-style generation gateway, an OpenAI-compatible chat endpoint, the
Volcengine (Jimeng) visual API and a NOWPayments-style payment provider.
Each answers at once with a well-formed success, so the fuzzing exercises
tidelog's own handling rather than an unconfigured service's 503.

Usage: fuzz_upstreams.py PORT_FILE  (binds 127.0.0.1:0, writes the port)
"""
import itertools
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

ids = itertools.count(1)


class Upstreams(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, body, status=200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = urlparse(self.path).path
        if path.startswith("/v1/payment/"):
            return self.answer({"payment_id": path.rsplit("/", 1)[-1],
                                "payment_status": "waiting", "actually_paid": 0})
        self.answer({"error": "unknown"}, 404)

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = {}
        url = urlparse(self.path)
        action = parse_qs(url.query).get("Action", [""])[0]
        if action == "CVSync2AsyncSubmitTask":
            return self.answer({"code": 10000, "data": {"task_id": f"jm-{next(ids)}"}})
        if action == "CVSync2AsyncGetResult":
            return self.answer({"code": 10000, "data": {
                "status": "done", "video_url": "https://cdn.example/v.mp4",
                "image_urls": ["https://cdn.example/i.png"]}})
        if url.path.endswith("/chat/completions"):
            return self.answer({"id": "chatcmpl-fuzz", "object": "chat.completion",
                                "choices": [{"index": 0, "finish_reason": "stop",
                                             "message": {"role": "assistant", "content": "喵"}}]})
        if url.path == "/v1/payment":
            n = next(ids)
            return self.answer({"payment_id": str(n), "payment_status": "waiting",
                                "pay_address": "TXfuzzaddress", "pay_amount": 10.5,
                                "pay_currency": "usdttrc20", "order_id": body.get("order_id")})
        if url.path.endswith("/result"):
            job = body.get("id", "")
            return self.answer({"code": 0, "msg": "success", "data": {
                "id": job, "status": "succeeded", "progress": 100,
                "results": [{"url": f"https://cdn.example/{job}"}]}})
        if url.path.startswith("/v1/"):
            return self.answer({"code": 0, "msg": "success", "data": {"id": f"fz-{next(ids)}"}})
        self.answer({"error": "unknown"}, 404)


server = ThreadingHTTPServer(("127.0.0.1", 0), Upstreams)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
