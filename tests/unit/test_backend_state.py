"""The ML backend's rankings on disk: written whole or not at all, and served again after a restart."""

import json
import os

import pytest

from activeft_label.backend.scores import priority_scores
from activeft_label.backend.settings import Settings
from activeft_label.backend.state import (Ranking, load_ranking, remove_stale_temporaries, save_ranking,
                                          state_folder, state_path, stored_projects)


def ranking(project=7, counter=1, ranked=(11, 12, 13), others=(14, 15), last=(16,), published=True):
    return Ranking(project=project, version=f"activeft-{counter}-0123abcd", counter=counter, key="0123abcd" * 8,
                   scores=priority_scores(list(ranked), others, last), ranked=list(ranked), labeled=[16],
                   skipped=[[17, "HTTP 404"]], budget=len(ranked), image_field="image", project_uid=f"{project}.1700",
                   created_at="2026-12-01T10:00:00+00:00", elapsed=1.5, published=published)


def test_a_saved_ranking_loads_as_it_was(tmp_path):
    folder = state_folder(str(tmp_path), "http://ls:8080/")
    assert folder == state_folder(str(tmp_path), "http://ls:8080")       # one folder per server
    assert folder != state_folder(str(tmp_path), "http://other:8080")
    first = ranking()
    path = save_ranking(folder, first)
    assert path == state_path(folder, 7) and os.path.isfile(path)
    assert load_ranking(folder, 7) == first
    assert stored_projects(folder) == [7]
    assert load_ranking(folder, 8) is None
    assert [name for name in os.listdir(folder)] == ["project-7.json"]  # no temporary left


def test_a_new_ranking_replaces_the_old_one_whole(tmp_path):
    folder = str(tmp_path)
    save_ranking(folder, ranking(counter=1))
    save_ranking(folder, ranking(counter=2, ranked=(15, 11)))
    loaded = load_ranking(folder, 7)
    assert loaded.counter == 2 and loaded.ranked == [15, 11]


def test_a_write_killed_half_way_leaves_the_previous_ranking(tmp_path, monkeypatch):
    folder = str(tmp_path)
    save_ranking(folder, ranking(counter=1))

    def killed(*args):
        raise KeyboardInterrupt  # the process dies between writing the temporary file and renaming it

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save_ranking(folder, ranking(counter=2))
    monkeypatch.undo()
    assert load_ranking(folder, 7).counter == 1
    assert os.listdir(folder) == ["project-7.json"]
    # A temporary file a SIGKILL left behind is not a state file, and is cleaned up on start.
    (tmp_path / ".project-7.json.dead").write_text('{"format": 1, "project": 7, "sco')
    assert stored_projects(folder) == [7] and load_ranking(folder, 7).counter == 1
    remove_stale_temporaries(folder)
    assert os.listdir(folder) == ["project-7.json"]


@pytest.mark.parametrize("damage", [
    lambda record: "{not json",
    lambda record: json.dumps({**record, "format": 99}),
    lambda record: json.dumps({k: v for k, v in record.items() if k != "scores"}),
    lambda record: json.dumps({**record, "ranked": [13, 12, 11]}),        # ranks against the scores
    lambda record: json.dumps({**record, "ranked": [11, 11]}),
    lambda record: json.dumps({**record, "project": 8}),
    lambda record: "",
])
def test_a_damaged_state_file_is_ignored(tmp_path, damage):
    folder = str(tmp_path)
    path = save_ranking(folder, ranking())
    record = json.loads(open(path).read())
    with open(path, "w") as handle:
        handle.write(damage(record))
    assert load_ranking(folder, 7) is None


def test_settings_travel_as_json_and_are_checked():
    settings = Settings(label_studio_url="http://ls:8080", port=9191, budget="5%",
                        selection={"method": "activeft", "iterations": 10}, embedding={"cache_dir": False})
    again = Settings.from_json(settings.to_json())
    assert again == settings
    from activeft_label.errors import InputError

    with pytest.raises(InputError, match="unknown backend settings"):
        Settings.from_json(json.dumps({"label_studio_url": "http://x", "colour": "red"}))
    with pytest.raises(InputError, match="port"):
        Settings.from_json(json.dumps({"label_studio_url": "http://x", "port": 0}))
    with pytest.raises(InputError, match="URL"):
        Settings.from_json(json.dumps({}))
    with pytest.raises(InputError, match="not set"):
        Settings.from_environment({})
