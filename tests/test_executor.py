"""The executors: input order, bounded in-flight work, the same results whatever the worker count."""

import itertools

import pytest

from imdd_build.executor import Executor, chunked, make_executor, map_ordered


def _square(x: int) -> int:
    return x * x


class _Boom:
    def __call__(self, x: int) -> int:
        if x == 5:
            raise RuntimeError("boom")
        return x


def test_chunked_is_lazy_and_keeps_order():
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert next(chunked(itertools.count(), 2)) == [0, 1]  # an endless iterable works


@pytest.mark.parametrize("workers,chunksize", [(1, 4), (2, 1), (2, 4), (3, 7)])
def test_map_ordered_returns_results_in_input_order(workers, chunksize):
    assert list(map_ordered(_square, range(50), workers, inflight_per_worker=2, chunksize=chunksize)) == \
        [x * x for x in range(50)]


def test_map_ordered_bounds_the_items_taken_ahead_of_results():
    workers, inflight, chunksize = 2, 2, 3
    taken = []

    def items():
        for i in range(200):
            taken.append(i)
            yield i

    ahead = 0
    for n, _ in enumerate(map_ordered(_square, items(), workers, inflight, chunksize), start=1):
        ahead = max(ahead, len(taken) - n)
    # submitted but not yet yielded: the window of chunks, plus the chunk being assembled
    assert ahead <= (workers * inflight + 1) * chunksize


def test_worker_errors_reach_the_caller():
    with pytest.raises(RuntimeError, match="boom"):
        list(map_ordered(_Boom(), range(10), 2, chunksize=2))


def test_make_executor():
    ex = make_executor("local", 2)
    assert isinstance(ex, Executor) and ex.describe() == {"executor": "local", "workers": 2}
    assert list(ex.map(_square, range(5))) == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError, match="invalid executor"):
        make_executor("dask", 2)
    with pytest.raises(ValueError, match="--ray-address needs --executor ray"):
        make_executor("local", 2, "ray://head:10001")
