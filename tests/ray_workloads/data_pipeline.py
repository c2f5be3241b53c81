"""A small Ray Data pipeline: read, transform in batches, filter, aggregate."""

import ray

ROWS = 20_000


def main() -> None:
    ray.init()
    dataset = (
        ray.data.range(ROWS, override_num_blocks=8)
        .map_batches(lambda batch: {"id": batch["id"] * 2})
        .filter(lambda row: row["id"] % 4 == 0)
    )
    total = dataset.sum("id")
    expected = sum(value * 2 for value in range(ROWS) if (value * 2) % 4 == 0)
    assert total == expected, (total, expected)
    print("sum", total, flush=True)


if __name__ == "__main__":
    main()
