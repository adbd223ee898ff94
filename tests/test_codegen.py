"""The committed decode kernel is exactly what the message table generates."""

from itchflow.decode import codegen
def test_generated_kernel_is_up_to_date():
    assert codegen.GENERATED_PATH.read_text() == codegen.generate(), (
        "src/itchflow/decode/_decode_generated.py is stale: run python -m itchflow.decode.codegen")


def test_generated_kernel_covers_every_type_and_field():
    from itchflow.wire.itch import MESSAGES

    text = codegen.generate()
    for m in MESSAGES.values():
        assert f"# {m.code} {m.name}, {m.length} bytes" in text
        for f in m.fields[1:]:
            assert f"r.{f.name} = " in text
