from runner.dedupe import SeenIndex


def test_remembers_the_first_row_of_each_recipient_across_growth() -> None:
    seen = SeenIndex(capacity=4)
    for i in range(1, 5001):
        assert seen.first_row(f"user-{i}", i) is None
    assert len(seen) == 5000
    assert seen.first_row("user-1", 9000) == 1
    assert seen.first_row("user-4321", 9001) == 4321
    assert seen.first_row("user-5001", 9002) is None
