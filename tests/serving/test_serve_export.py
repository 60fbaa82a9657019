"""`translator serve EXPORT_DIR`: the SavedModel behind the same HTTP API, through real HTTP."""

import pytest

from .conftest import request, start_server


@pytest.fixture(scope="module")
def export_server(tiny_attention_run, tmp_path_factory):
    from translator.export import export_run

    out = export_run(tiny_attention_run, tmp_path_factory.mktemp("export") / "beam3", beam_size=3)
    log = tmp_path_factory.mktemp("export-server") / "stderr.txt"
    served = start_server(out, "--timeout", "300", stderr_path=log)
    yield served
    served.stop()


def test_an_export_serves_what_the_python_api_answers(export_server, api, sentences):
    status, health = request(export_server.url, "/health")
    assert status == 200 and health["fixed_options"] is True and health["attention"] is True
    assert health["defaults"]["beam_size"] == 3

    texts = [*sentences[:6], ""]
    status, answer = request(export_server.url, "/translate", {"text": texts})
    assert status == 200
    assert [t["translation"] for t in answer["translations"]] == api.translate(texts, beam_size=3)

    status, aligned = request(export_server.url, "/align", {"text": sentences[0]})
    assert status == 200
    assert aligned["target_tokens"] == api.align(sentences[0], beam_size=3).target_tokens


def test_an_export_refuses_other_options(export_server):
    status, answer = request(export_server.url, "/translate", {"text": "Hallo", "beam_size": 5})
    assert status == 422
    assert answer["error"].startswith("beam_size: this export fixes beam_size at 3")
    assert request(export_server.url, "/health")[0] == 200
