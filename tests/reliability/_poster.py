"""A client process for the reliability tests (stdlib only, so it starts fast).

    python _poster.py URL TOKEN BODIES.json START_AT OUT.json [RETRIES]

Waits until START_AT (epoch seconds) so all clients fire together, posts each body in
order and writes one record per body: the final status, the response body and the
errors it retried (5xx and connection errors are retryable; 4xx are not)."""

import json
import sys
import time
import urllib.error
import urllib.request


def post(url: str, token: str, body) -> tuple[int, object]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"null")
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def main() -> None:
    url, token, bodies_path, start_at, out_path = sys.argv[1:6]
    retries = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    with open(bodies_path) as fh:
        bodies = json.load(fh)
    time.sleep(max(0.0, float(start_at) - time.time()))
    records = []
    for body in bodies:
        errors = []
        for _attempt in range(retries + 1):
            try:
                status, data = post(url, token, body)
            except (OSError, urllib.error.URLError) as exc:  # connection refused/reset
                status, data = 0, f"{exc.__class__.__name__}: {exc}"
            if status == 0 or status >= 500:
                errors.append({"status": status, "body": data})
                time.sleep(0.05)
                continue
            break
        records.append({"status": status, "body": data, "errors": errors})
    with open(out_path, "w") as fh:
        json.dump(records, fh)


if __name__ == "__main__":
    main()
