from models.tokenizer import WordTokenizer


def test_roundtrip_and_fallback():
    tok = WordTokenizer.build({"apples", "Question"})
    for s in ["Question: Tom has 12 apples.\nAnswer: 12 + 7 = 19. #### 19", "zebra 42!", "a\n\nb"]:
        assert tok.decode(tok.encode(s)) == s
    ids = tok.encode(" apples 12")
    assert len(ids) == 3  # " apples", " 1", "2"
    assert tok.encode("é") == [tok.unk_id]
