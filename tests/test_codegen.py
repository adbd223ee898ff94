"""The committed decode kernel is exactly what the message table generates."""

from itchflow.itch import codegen


def test_generated_kernel_is_up_to_date():
    assert codegen.GENERATED_PATH.read_text() == codegen.generate(), (
        "src/itchflow/itch/_decode_generated.py is stale: run python -m itchflow.itch.codegen")


def test_generated_kernel_covers_every_type_and_field():
    from itchflow.itch.spec import MESSAGES

    text = codegen.generate()
    for m in MESSAGES.values():
        assert f"# {m.code} {m.name}, {m.length} bytes" in text
        for f in m.fields[1:]:
            assert f"r.{f.name} = " in text
