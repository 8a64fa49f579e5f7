"""The ML backend's score encoding and model versions (pure functions)."""

import pytest

from activeft_label.backend.scores import (LAST_SCORE, PENDING_VERSION, is_backend_version, model_version,
                                           order_by_score, priority_scores, unranked_score)


def test_rank_one_scores_lowest_and_sorting_by_score_gives_the_rank_order():
    ranked = [40, 7, 19, 3]
    scores = priority_scores(ranked, others=[1, 2, 5], last=[8, 9])
    assert scores[40] == min(scores.values())
    assert [scores[t] for t in ranked] == sorted(scores[t] for t in ranked)
    assert order_by_score(scores)[:4] == ranked
    assert all(0 < score <= 1 for score in scores.values())


def test_unselected_tasks_come_after_every_selected_one_and_annotated_or_unreadable_last():
    ranked = list(range(100, 110))
    scores = priority_scores(ranked, others=[1, 2, 3], last=[50, 51])
    worst_selected = max(scores[t] for t in ranked)
    assert all(scores[t] > worst_selected for t in (1, 2, 3))
    assert scores[1] == scores[2] == scores[3] == unranked_score(len(ranked))
    assert scores[50] == scores[51] == LAST_SCORE
    assert all(scores[t] < LAST_SCORE for t in (1, 2, 3))
    order = order_by_score(scores)
    assert order[:10] == ranked and set(order[10:13]) == {1, 2, 3} and set(order[13:]) == {50, 51}


def test_exact_values_and_edge_cases():
    assert priority_scores([5, 6]) == {5: 1 / 4, 6: 2 / 4}
    assert priority_scores([], others=[1], last=[2]) == {1: 0.5, 2: 1.0}
    # A task given twice keeps its first place; a task ranked twice is a bug.
    assert priority_scores([1], others=[1, 2], last=[2])[1] == 1 / 3
    with pytest.raises(ValueError):
        priority_scores([1, 1])


def test_large_budgets_stay_strictly_increasing():
    ranked = list(range(100_000))
    scores = priority_scores(ranked, others=[10**6])
    values = [scores[t] for t in ranked]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert values[-1] < scores[10**6] < LAST_SCORE


def test_model_versions():
    key = "0123456789abcdef" * 4
    assert model_version(3, key) == "activeft-3-01234567"
    assert is_backend_version(model_version(1, key))
    for other in (PENDING_VERSION, "activeft", "my-model-1", "", None, "activeft-1-xyz"):
        assert not is_backend_version(other)
    with pytest.raises(ValueError):
        model_version(0, key)
    with pytest.raises(ValueError):
        model_version(1, "not hex")


def test_budget_counts_for_projects_of_every_size():
    from activeft_label.backend.ranker import budget_count

    assert budget_count("8", 30, 0) == 8
    assert budget_count("8", 30, 25) == 5             # at most the unannotated readable tasks
    assert budget_count("8", 6, 0) == 6               # a count larger than the project: all of it
    assert budget_count("10%", 30, 0) == 3            # of every readable task, annotated ones included
    assert budget_count("1%", 30, 0) == 1             # at least one
    assert budget_count("10%", 30, 30) == 0           # everything annotated: nothing to queue
    from activeft_label.errors import InputError

    with pytest.raises(InputError):
        budget_count("many", 30, 0)


def test_the_image_object_of_a_label_config():
    from activeft_label.backend.ranker import image_object
    from activeft_label.errors import InputError

    assert image_object('<View><Image name="i" value="$photo"/><Choices name="c" toName="i"/></View>') == "photo"
    assert image_object('<View><View><Image name="a" value="$first"/></View><Image name="b" value="$second"/>'
                        '</View>') == "first"
    for config, message in (('<View><Text name="t" value="$text"/></View>', "its objects: Text"),
                            ('<View><Image name="i" value="http://x/y.png"/></View>', "no <Image> object"),
                            ("<View>", "not valid XML"), ("", "not valid XML")):
        with pytest.raises(InputError, match=message):
            image_object(config)
