"""Real receivers for notification tests: an SMTP server (aiosmtpd) and a
webhook endpoint that checks X-Lockbox-Signature. Each appends what it got to
a JSON Lines file in --out; runs until killed."""
import argparse
import email
import email.policy
import hashlib
import hmac
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

parser = argparse.ArgumentParser()
parser.add_argument("--smtp-port", type=int, default=0)
parser.add_argument("--http-port", type=int, default=0)
parser.add_argument("--out", required=True)
parser.add_argument("--secret", default="")
parser.add_argument("--smtp-tls-cert", default="", help="require STARTTLS with this certificate")
parser.add_argument("--smtp-tls-key", default="")
parser.add_argument("--http-delay", type=float, default=0,
                    help="a slow receiver: answer each webhook call this many seconds after it arrives")
args = parser.parse_args()
lock = threading.Lock()


def record(name, item):
    with lock, open(os.path.join(args.out, name), "a") as f:
        f.write(json.dumps(item) + "\n")
        f.flush()


class Mail:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        record("mail.jsonl", {
            "from": envelope.mail_from, "to": envelope.rcpt_tos, "subject": str(msg["subject"]),
            "key": str(msg["X-Lockbox-Idempotency-Key"]), "event": str(msg["X-Lockbox-Event"]),
            "resource": str(msg["X-Lockbox-Resource"]), "message_id": str(msg["Message-ID"]),
            "body": msg.get_content()})
        return "250 OK"


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        sig = dict(p.split("=", 1) for p in self.headers.get("X-Lockbox-Signature", "").split(",") if "=" in p)
        valid = False
        if "t" in sig and "v1" in sig:
            want = hmac.new(args.secret.encode(), sig["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
            # A receiver rejects old timestamps to stop replays; the server
            # clock may be moved by tests, so allow for that here.
            valid = hmac.compare_digest(want, sig["v1"])
        # Recorded on arrival, so that a second send of one message shows
        # even while the first is still being answered.
        record("hooks.jsonl", {"valid": valid, "key": self.headers.get("X-Lockbox-Idempotency-Key"),
                               "event": self.headers.get("X-Lockbox-Event"), "body": json.loads(body),
                               "arrived": time.time()})
        if args.http_delay:
            time.sleep(args.http_delay)
        self.send_response(200 if valid else 401)
        self.end_headers()

    def log_message(self, *a):
        pass


if args.smtp_port:
    tls = {}
    if args.smtp_tls_cert:
        import ssl
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.smtp_tls_cert, args.smtp_tls_key)
        tls = {"tls_context": context, "require_starttls": True}
    Controller(Mail(), hostname="127.0.0.1", port=args.smtp_port, **tls).start()
if args.http_port:
    server = ThreadingHTTPServer(("127.0.0.1", args.http_port), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
open(os.path.join(args.out, "ready"), "w").close()
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
while True:
    time.sleep(3600)
