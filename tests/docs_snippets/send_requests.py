"""Sent to ``manage.py shell -c`` of the project the docs built.

Sends the requests listed in the JSON file named by ``DOCS_SNIPPETS_REQUESTS``
through Django's test client, in order, and prints their responses as JSON
after a marker line. An exception raised by a view is not caught: its
traceback is the clearest report of a broken snippet.
"""

import json
import os
from pathlib import Path

from django.test import Client

client = Client()
answers = []
for request in json.loads(Path(os.environ["DOCS_SNIPPETS_REQUESTS"]).read_text()):
    headers = dict(request["headers"])
    content_type = headers.pop("Content-Type", "application/octet-stream")
    response = client.generic(
        request["method"],
        request["path"],
        request["body"].encode(),
        content_type,
        headers=headers,
    )
    answers.append(
        {
            "status": response.status_code,
            "headers": dict(response.items()),
            "body": response.content.decode(),
        }
    )
print("--- responses ---")
print(json.dumps(answers))
