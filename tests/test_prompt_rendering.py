"""Training and eval ask a model without a chat template in exactly the same words."""

from advisor.data.records import Record
from evaluators.backends.transformers import render_prompt
from trainers import preference_rows, sft_rows


class PlainTokenizer:
    chat_template = None


def test_plain_prompts_are_identical_in_training_and_eval():
    rec = Record(1, "chat", [{"role": "system", "content": "Reply with the label."},
                             {"role": "user", "content": "my card is lost"}], "lost_or_stolen_card", "my card is lost")
    row = sft_rows([rec], PlainTokenizer())[0]
    prompt, templated = render_prompt(PlainTokenizer(), rec.prompt)
    assert not templated
    assert row["prompt"] == prompt == "System: Reply with the label.\n\nUser: my card is lost\n\nAssistant:"
    assert row["completion"] == " lost_or_stolen_card"
    pref = Record(2, "preference", rec.prompt, "good", "my card is lost", rejected="bad")
    p = preference_rows([pref], PlainTokenizer())[0]
    assert p["prompt"] == prompt and (p["chosen"], p["rejected"]) == (" good", " bad")
