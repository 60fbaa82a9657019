"""`translator serve EXPORT_DIR`: the SavedModel behind the same HTTP API, through real HTTP."""

import pytest

from .conftest import request, start_server


@pytest.fixture(scope="module")
def export_server(tiny_attention_export, tmp_path_factory):
    """`translator serve` on the export (beam 4, 3-best, length penalty 0.6, batches of 7)."""
    log = tmp_path_factory.mktemp("export-server") / "stderr.txt"
    served = start_server(tiny_attention_export, "--timeout", "300", stderr_path=log)
    yield served
    served.stop()


def test_an_export_serves_what_the_python_api_answers(export_server, api, sentences):
    status, health = request(export_server.url, "/health")
    assert status == 200 and health["fixed_options"] is True and health["attention"] is True
    assert health["defaults"] == {"beam_size": 4, "n_best": 3, "length_penalty": 0.6}

    texts = [*sentences[:9], ""]
    status, answer = request(export_server.url, "/translate", {"text": texts})
    assert status == 200
    options = dict(beam_size=4, length_penalty=0.6, batch_size=7)
    want = api.translate_nbest(texts, n_best=3, **options)
    assert [[h["text"] for h in t["hypotheses"]] for t in answer["translations"]] == [
        [text for text, _ in row] for row in want
    ]

    status, aligned = request(export_server.url, "/align", {"text": sentences[0]})
    assert status == 200
    assert aligned["target_tokens"] == api.align(sentences[0], **options).target_tokens


def test_an_export_refuses_other_options(export_server):
    status, answer = request(export_server.url, "/translate", {"text": "Hallo", "beam_size": 5})
    assert status == 422
    assert answer["error"].startswith("beam_size: this export fixes beam_size at 4")
    assert request(export_server.url, "/health")[0] == 200


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/translate", b'{"text": "\\ud800"}', "text"),
        ("/translate", b'{"text": ["Hallo", "\\udfff"]}', "text[1]"),
        ("/align", b'{"text": "Hallo \\ud800"}', "text"),
    ],
)
def test_an_export_refuses_a_lone_surrogate_naming_the_field(export_server, path, body, field):
    tracebacks = export_server.stderr().count("Traceback")
    status, answer = request(export_server.url, path, raw=body)
    assert status == 422
    assert answer["error"].startswith(f"{field}: not valid Unicode: a lone surrogate"), answer
    assert export_server.stderr().count("Traceback") == tracebacks
