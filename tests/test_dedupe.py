from runner.dedupe import SeenIndex


def test_remembers_the_first_row_of_each_recipient_across_growth() -> None:
    seen = SeenIndex(capacity=4)
    for i in range(1, 5001):
        assert seen.first_row(f"user-{i}", i) is None
    assert len(seen) == 5000
    assert seen.first_row("user-1", 9000) == 1
    assert seen.first_row("user-4321", 9001) == 4321
    assert seen.first_row("user-5001", 9002) is None


def test_an_index_sized_for_its_keys_never_grows_and_a_wild_guess_is_capped() -> None:
    seen = SeenIndex.for_about(3000)
    size = seen._size  # noqa: SLF001 - the promise is about the table itself
    for i in range(3000):
        seen.first_row(f"user-{i}", i)
    assert seen._size == size  # noqa: SLF001
    # A guess from a file's first lines can be far off; the table starts at most this big.
    assert SeenIndex.for_about(10**12)._size == 1 << 21  # noqa: SLF001
