"""`translator bench`: the exported model's decoding speed, measured beside the Python API's."""


def test_export_decoding_throughput(tiny_attention_run):
    from translator.benchmark import export_decoding_throughput
    from translator.rundir import RunDir

    sources = ["Das ist gut.", "Wir hatten einen Mordsspaß.", "", "Hallo"] * 5
    figures = export_decoding_throughput(RunDir(tiny_attention_run), sources, 2, batch_size=8)
    assert figures["sentences"] == 20
    assert figures["seconds"] > 0 and figures["sentences_per_s"] > 0
