#!/usr/bin/env python3
"""A fake Hugging Face hub on loopback, for zimage's pull tests (Python stdlib only).

Two HTTP servers on 127.0.0.1, on free ports: the "hub" (API + resolve) and a "CDN" that the
hub redirects large (LFS) files to, as huggingface.co does. It serves local folders as repos:

  GET  /api/models/{repo}/revision/{rev}[?blobs=true]  {"id", "sha", "siblings": [...]}
  GET  /api/models/{repo}/tree/{rev}[?recursive=...]    huggingface_hub's tree listing
  HEAD/GET /{repo}/resolve/{rev}/{path}                 *.safetensors: 302 to the CDN with
       X-Linked-Etag (sha256) / X-Linked-Size / X-Repo-Commit; others: 200, ETag = git blob sha1
  GET  /cdn/{repo}/{path} (CDN port)                     the bytes, with Range (206)

Faults for the tests: --gated REPO (401 without "Authorization: Bearer <--token>"),
--drop PATH:BYTES:COUNT (the CDN closes the connection after BYTES bytes, COUNT times),
--corrupt PATH (one byte flipped), --foreign-redirect PATH (redirect to another host),
--bad-name NAME (an extra file name in every listing), --huge PATH (listed as 1 PB).

Prints "HUB_PORT CDN_PORT" on stdout, appends one JSON line per request to --log, and exits when
its stdin closes (the test that started it ended) or after --lifetime seconds.
"""
import argparse
import hashlib
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
REPOS = {}  # repo id -> {"dir", "commit", "files": {path: {"size", "sha256", "git"}}}
LOG_LOCK = threading.Lock()
DROPS = {}  # path -> [bytes, remaining count]
PORTS = {}


def is_lfs(path):
    return path.endswith(".safetensors") or path.endswith(".gguf")


def scan(repo, folder):
    files = {}
    for root, _, names in os.walk(folder):
        for n in sorted(names):
            full = os.path.join(root, n)
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            data = open(full, "rb").read()
            files[rel] = {
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "git": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
            }
    commit = hashlib.sha1(("fake-commit:" + repo).encode()).hexdigest()
    return {"dir": folder, "commit": commit, "files": files}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakehub/1"

    def log_message(self, fmt, *a):  # quiet
        pass

    def log_request_json(self):
        if not ARGS.log:
            return
        rec = {
            "server": self.server.kind,
            "method": self.command,
            "path": self.path,
            "range": self.headers.get("Range"),
            "auth": self.headers.get("Authorization"),
        }
        with LOG_LOCK, open(ARGS.log, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def reply(self, code, body=b"", headers=None, ctype="application/json"):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, code, err_code, msg):
        self.reply(code, json.dumps({"error": msg}).encode(), {"X-Error-Code": err_code, "X-Error-Message": msg})

    def find_repo(self, parts):
        repo = "/".join(parts[:2])
        return repo, REPOS.get(repo)

    def authorized(self, repo):
        if repo not in ARGS.gated:
            return True
        return self.headers.get("Authorization") == "Bearer " + (ARGS.token or "")

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self.log_request_json()
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        if self.server.kind == "cdn":
            return self.serve_cdn(parts)
        if len(parts) >= 5 and parts[0] == "api" and parts[1] == "models":
            repo, r = self.find_repo(parts[2:4])
            if r is None:
                return self.error(404, "RepoNotFound", "Repository not found")
            if not self.authorized(repo):
                return self.error(401, "GatedRepo", "Access to model %s is restricted." % repo)
            kind, rev = parts[4], "/".join(parts[5:])
            if rev not in ("main", r["commit"]):
                return self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            query = urllib.parse.parse_qs(url.query)
            if kind == "revision":
                blobs = query.get("blobs", [""])[0] in ("true", "True", "1")
                return self.reply(200, json.dumps(self.model_info(repo, r, blobs)).encode())
            if kind == "tree":
                return self.reply(200, json.dumps(self.tree(r)).encode())
            return self.error(404, "EntryNotFound", "unknown api")
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, r = self.find_repo(parts)
            if r is None:
                return self.error(404, "RepoNotFound", "Repository not found")
            if not self.authorized(repo):
                return self.error(401, "GatedRepo", "Access to model %s is restricted." % repo)
            rev, path = parts[3], "/".join(parts[4:])
            if rev not in ("main", r["commit"]):
                return self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            meta = r["files"].get(path)
            if meta is None:
                return self.error(404, "EntryNotFound", "Entry not found")
            common = {"X-Repo-Commit": r["commit"]}
            if is_lfs(path):
                host = "evil.invalid" if path in ARGS.foreign_redirect else "127.0.0.1"
                loc = "http://%s:%d/cdn/%s/%s?expires=1" % (host, PORTS["cdn"], repo, urllib.parse.quote(path))
                common.update({"Location": loc, "X-Linked-Etag": '"%s"' % meta["sha256"],
                               "X-Linked-Size": str(meta["size"]), "ETag": '"%s"' % meta["git"]})
                return self.reply(302, b"", common)
            data = self.content(r, path)
            common["ETag"] = '"%s"' % meta["git"]
            return self.reply(200, data, common, "application/octet-stream")
        return self.error(404, "EntryNotFound", "unknown path")

    def content(self, r, path):
        data = bytearray(open(os.path.join(r["dir"], path), "rb").read())
        if path in ARGS.corrupt and data:
            data[len(data) // 2] ^= 0x01
        return bytes(data)

    def serve_cdn(self, parts):
        if len(parts) < 4 or parts[0] != "cdn":
            return self.error(404, "EntryNotFound", "unknown path")
        repo, r = self.find_repo(parts[1:3])
        path = "/".join(parts[3:])
        if r is None or path not in r["files"]:
            return self.error(404, "EntryNotFound", "Entry not found")
        data = self.content(r, path)
        start, code, headers = 0, 200, {"ETag": '"%s"' % r["files"][path]["sha256"], "Accept-Ranges": "bytes"}
        rng = self.headers.get("Range")
        if rng:
            if not rng.startswith("bytes=") or not rng[6:].rstrip("-").isdigit():
                return self.error(416, "RangeNotSatisfiable", "bad range")
            start = int(rng[6:].rstrip("-"))
            if start >= len(data):
                return self.reply(416, b"", {"Content-Range": "bytes */%d" % len(data)})
            code = 206
            headers["Content-Range"] = "bytes %d-%d/%d" % (start, len(data) - 1, len(data))
        body = data[start:]
        drop = DROPS.get(path)
        if drop and drop[1] > 0 and self.command == "GET":
            drop[1] -= 1
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: drop[0]])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.reply(code, body, headers, "application/octet-stream")

    def model_info(self, repo, r, blobs):
        siblings = []
        for path, m in sorted(r["files"].items()):
            s = {"rfilename": path}
            if blobs:
                s.update({"size": m["size"], "blobId": m["git"]})
                if is_lfs(path):
                    s["lfs"] = {"sha256": m["sha256"], "size": m["size"], "pointerSize": 134}
                if path in ARGS.huge:
                    s["size"] = 10**15
                    s.pop("lfs", None)
            siblings.append(s)
        for bad in ARGS.bad_name:
            siblings.append({"rfilename": bad})
        return {"id": repo, "modelId": repo, "sha": r["commit"], "private": False,
                "gated": "manual" if repo in ARGS.gated else False, "siblings": siblings}

    def tree(self, r):
        out, dirs = [], set()
        for path, m in sorted(r["files"].items()):
            d = path.rsplit("/", 1)[0] if "/" in path else None
            while d and d not in dirs:
                dirs.add(d)
                out.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": d})
                d = d.rsplit("/", 1)[0] if "/" in d else None
            e = {"type": "file", "oid": m["git"], "size": m["size"], "path": path}
            if is_lfs(path):
                e["lfs"] = {"oid": m["sha256"], "size": m["size"], "pointerSize": 134}
            out.append(e)
        return out


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, kind):
        super().__init__(("127.0.0.1", 0), Handler)
        self.kind = kind


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--repo", action="append", default=[], help="ORG/NAME=FOLDER")
    p.add_argument("--gated", action="append", default=[])
    p.add_argument("--token")
    p.add_argument("--log")
    p.add_argument("--drop", action="append", default=[], help="PATH:BYTES:COUNT")
    p.add_argument("--corrupt", action="append", default=[])
    p.add_argument("--foreign-redirect", action="append", default=[])
    p.add_argument("--bad-name", action="append", default=[])
    p.add_argument("--huge", action="append", default=[], help="PATH listed with a size of 1 PB")
    p.add_argument("--lifetime", type=float, default=300)
    ARGS = p.parse_args()
    for spec in ARGS.repo:
        repo, folder = spec.split("=", 1)
        REPOS[repo] = scan(repo, folder)
    for spec in ARGS.drop:
        path, n, count = spec.rsplit(":", 2)
        DROPS[path] = [int(n), int(count)]
    hub, cdn = Server("hub"), Server("cdn")
    PORTS["hub"], PORTS["cdn"] = hub.server_address[1], cdn.server_address[1]
    for s in (hub, cdn):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print(PORTS["hub"], PORTS["cdn"], flush=True)

    def watch_stdin():
        try:
            while sys.stdin.read(4096):
                pass
        except Exception:
            pass
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    time.sleep(ARGS.lifetime)
    os._exit(0)


if __name__ == "__main__":
    main()
