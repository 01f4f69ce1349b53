import math

import pytest
import torch

from accel3d.caching import PAPER_GRIDS, GridCells, GridHashTable

FINE_COARSE = [GridCells(10, 10, 0.1, 10), GridCells(30, 30, 0.2, 30)]


def key(az=0.0, el=10.0, r=1.8, t=500.0):
    return torch.tensor([[az, el, r, t]], dtype=torch.float64)


def entry(seed, shape=(2, 3, 4)):
    return torch.randn(1, *shape, generator=torch.Generator().manual_seed(seed))


def test_a_single_entry_is_returned_exactly():
    table = GridHashTable()
    value, x = entry(0), entry(1, (8,))
    table.insert(key(), x, value)
    found = table.lookup(key(az=3.0, t=503.0), entry(2, (8,)))  # same cells, different noisy input
    assert found.hit.tolist() == [True] and found.entries.tolist() == [1]
    assert torch.equal(found.values[0], value[0])


def test_an_empty_table_and_an_empty_bucket_miss():
    table = GridHashTable(num_buckets=100_003, exact_cells=True)
    assert not table.lookup(key(), entry(0, (8,))).hit.any()
    table.insert(key(), entry(0, (8,)), entry(1))
    far = table.lookup(key(az=180.0, t=100.0), entry(0, (8,)))
    assert far.hit.tolist() == [False] and far.grid.tolist() == [-1] and far.entries.tolist() == [0]


def test_azimuth_wraps_around():
    table = GridHashTable(grids=[GridCells(20, 20, 0.1, 10)])
    cells = table.cells(torch.tensor([[359.0, 0, 1, 0], [1.0, 0, 1, 0], [-1.0, 0, 1, 0], [719.0, 0, 1, 0], [330.0, 0, 1, 0]]))
    az = cells[:, 0, 0].tolist()
    assert az[0] == az[1] == az[2] == az[3]  # 359, 1, -1 and 719 degrees share the cell centred on 0
    assert az[4] != az[0]  # 330 is in the next cell over
    # flooring the raw angle (the public code) would split 359 and 1:
    assert math.floor(359 / 20) != math.floor(1 / 20)
    table.insert(key(az=359.0), entry(0, (8,)), entry(1))
    assert table.lookup(key(az=1.0), entry(0, (8,))).hit.item()


def test_infinite_cell_sizes_ignore_a_dimension():
    temporal = GridHashTable(grids=[GridCells(math.inf, math.inf, math.inf, 10)])
    cells = temporal.cells(torch.tensor([[10.0, -5, 1.5, 123], [250.0, 80, 3.0, 129]]))
    assert torch.equal(cells[0], cells[1])


def test_keys_are_validated():
    table = GridHashTable()
    with pytest.raises(ValueError, match="NaN"):
        table.lookup(key(r=math.nan), entry(0, (8,)))
    with pytest.raises(ValueError, match="radius"):
        table.insert(key(r=-1.0), entry(0, (8,)), entry(1))
    with pytest.raises(ValueError, match="elevation"):
        table.cells(key(el=95.0))
    with pytest.raises(ValueError, match="timestep"):
        table.cells(key(t=-3.0))
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        table.cells(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="one row per key"):
        table.insert(key(), entry(0, (8,)).repeat(2, 1), entry(1))
    with pytest.raises(ValueError, match="NaN or inf"):
        table.insert(key(), entry(0, (8,)), torch.full((1, 2), math.inf))
    with pytest.raises(ValueError, match="cell size"):
        GridCells(0, 10, 0.1, 10)
    with pytest.raises(ValueError, match="temperature"):
        GridHashTable(temperature=0)


def test_hash_is_the_papers_formula():
    table = GridHashTable(grids=[GridCells(10, 10, 0.1, 10)], num_buckets=200)
    keys = torch.tensor([[40.0, 25.0, 1.85, 437.0]])
    i, j, k, n = 4, 2, 18, 43  # az cells are centred: round(40 / 10) = 4
    assert table.cells(keys)[0, 0].tolist() == [i, j, k, n]
    assert table.buckets(keys).item() == (i + 73856093 * j + 19349669 * k + 83492791 * n) % 200


def test_retrieval_weights_are_a_softmax_of_mean_squared_distance():
    table = GridHashTable(grids=[GridCells(10, 10, 0.1, 10)], temperature=0.5)
    inputs = [torch.zeros(1, 4), torch.ones(1, 4), torch.full((1, 4), 2.0)]
    values = [torch.full((1, 3), float(i)) for i in range(3)]
    for x, v in zip(inputs, values):
        table.insert(key(), x, v)
    query = torch.full((1, 4), 0.25)
    dist = torch.tensor([0.25**2, 0.75**2, 1.75**2])  # mean squared differences
    weights = torch.softmax(-dist / 0.5, 0)
    expected = sum(w * v for w, v in zip(weights, values))
    found = table.lookup(key(), query)
    assert torch.allclose(found.values, expected, atol=1e-6)
    # a tiny temperature picks the nearest input, a huge one averages
    sharp = GridHashTable(grids=[GridCells(10, 10, 0.1, 10)], temperature=1e-4)
    flat = GridHashTable(grids=[GridCells(10, 10, 0.1, 10)], temperature=1e6)
    for t in (sharp, flat):
        for x, v in zip(inputs, values):
            t.insert(key(), x, v)
    assert torch.allclose(sharp.lookup(key(), query).values, values[0])
    assert torch.allclose(flat.lookup(key(), query).values, torch.full((1, 3), 1.0), atol=1e-5)


def test_queues_keep_the_newest_entries():
    table = GridHashTable(grids=[GridCells(10, 10, 0.1, 10)], queue_length=3, temperature=1e6)
    for i in range(5):
        table.insert(key(), torch.zeros(1, 4), torch.full((1, 2), float(i)))
    assert len(table) == 3 and table.dropped == 2
    # uniform weights over the three newest: (2 + 3 + 4) / 3
    assert torch.allclose(table.lookup(key(), torch.zeros(1, 4)).values, torch.full((1, 2), 3.0))


def test_memory_is_bounded_in_bytes_oldest_first():
    probe = GridHashTable(grids=[GridCells(10, 10, 0.1, 10)], num_buckets=100_003, exact_cells=True)
    probe.insert(key(), entry(0, (8,)), entry(1))
    size = probe.entry_bytes
    assert size >= (8 + 24) * 4  # stored input and value, in float32
    table = GridHashTable(grids=[GridCells(10, 10, 0.1, 10)], num_buckets=100_003, exact_cells=True, max_bytes=3 * size + size // 2)
    azimuths = [0.0, 40.0, 80.0, 120.0, 160.0]
    for i, az in enumerate(azimuths):
        table.insert(key(az=az), entry(i, (8,)), entry(10 + i))
        assert table.nbytes <= table.max_bytes
    assert len(table) == 3 and table.evicted == 2
    hits = [table.lookup(key(az=az), entry(0, (8,))).hit.item() for az in azimuths]
    assert hits == [False, False, True, True, True]
    with pytest.raises(ValueError, match="max_bytes"):
        table.insert(torch.cat([key(az=a) for a in azimuths]), entry(0, (8,)).repeat(5, 1), entry(1).repeat(5, 1, 1, 1))


def test_adaptive_grid_uses_the_most_similar_grid():
    e = torch.ones(1, 6)

    def build(second, third):
        table = GridHashTable(grids=FINE_COARSE, num_buckets=100_003)
        table.insert(key(az=0.0), torch.zeros(1, 4), e)  # fine cell 0, coarse cell 0
        table.insert(key(az=12.0), torch.zeros(1, 4), second)  # fine cell 1, coarse cell 0
        table.insert(key(az=2.0), torch.zeros(1, 4), third)  # fine cell 0, coarse cell 0
        return table

    fine_bucket, coarse_bucket = GridHashTable(grids=FINE_COARSE, num_buckets=100_003).buckets(key(az=0.0))[0].tolist()
    # the fine bucket agrees (cos(e, e) = 1); the coarse one first measures cos(-e, e) = -1, then
    # takes one EMA step: 0.9 * -1 + 0.1 * mean(cos(e, e), cos(e, -e)) = -0.9
    agree = build(second=-e, third=e)
    assert agree.similarity()[0, fine_bucket].item() == pytest.approx(1.0)
    assert agree.similarity()[1, coarse_bucket].item() == pytest.approx(-0.9)
    assert agree.lookup(key(az=1.0), torch.zeros(1, 4)).grid.item() == 0

    # the fine bucket disagrees (cos(-e, e) = -1); the coarse one: 1, then 0.9 * 1 + 0.1 * -1 = 0.8
    disagree = build(second=e, third=-e)
    assert disagree.similarity()[0, fine_bucket].item() == pytest.approx(-1.0)
    assert disagree.similarity()[1, coarse_bucket].item() == pytest.approx(0.8)
    assert disagree.lookup(key(az=1.0), torch.zeros(1, 4)).grid.item() == 1


def test_unmeasured_buckets_prefer_the_finest_grid():
    table = GridHashTable(grids=PAPER_GRIDS, num_buckets=100_003)
    table.insert(key(), torch.zeros(1, 4), torch.ones(1, 2))
    assert table.lookup(key(), torch.zeros(1, 4)).grid.item() == 0


def test_batched_insert_and_lookup_match_one_by_one():
    keys = torch.tensor([[0.0, 0, 1.5, 100], [5.0, 0, 1.5, 104], [90.0, 20, 1.9, 700], [270.0, -5, 1.7, 300]], dtype=torch.float64)
    xs = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    vs = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(1))
    batched, single = GridHashTable(num_buckets=997), GridHashTable(num_buckets=997)
    batched.insert(keys[:2], xs[:2], vs[:2])
    batched.insert(keys[2:], xs[2:], vs[2:])
    for i in range(4):
        single.insert(keys[i : i + 1], xs[i : i + 1], vs[i : i + 1])
    queries = keys + torch.tensor([1.0, 1.0, 0.01, 2.0])
    a, b = batched.lookup(queries, xs.flip(0)), single.lookup(queries, xs.flip(0))
    assert torch.equal(a.hit, b.hit) and torch.equal(a.grid, b.grid)
    assert torch.allclose(a.values, b.values)


def test_cross_cell_hits_are_flagged_and_exact_cells_refuses_them():
    # two cells that collide in a one-bucket table
    shared = GridHashTable(grids=[GridCells(10, 10, 0.1, 10)], num_buckets=1)
    strict = GridHashTable(grids=[GridCells(10, 10, 0.1, 10)], num_buckets=1, exact_cells=True)
    for table in (shared, strict):
        table.insert(key(az=0.0), torch.zeros(1, 4), torch.ones(1, 2))
    far = key(az=180.0, t=900.0)
    loose = shared.lookup(far, torch.zeros(1, 4))
    assert loose.hit.item() and loose.cross_cell.item()
    assert not strict.lookup(far, torch.zeros(1, 4)).hit.item()
