"""The benchmark scripts' shared checks: a JSON output (fileutil.check_json_output) and --seeds (argtypes.seed_list)."""
import pytest

from LiverTumorSegLib.argtypes import seed_list
from LiverTumorSegLib.errors import InputError, OutputExistsError
from LiverTumorSegLib.fileutil import check_json_output


def test_a_json_output_is_checked_before_the_work(tmp_path):
    data = tmp_path / "cases.csv"
    data.write_text("image,label\n")
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    assert check_json_output(None, False, [data]) is None and check_json_output("", False) is None
    assert check_json_output(tmp_path / "new.json", False, [data, None, tmp_path]) == tmp_path / "new.json"
    with pytest.raises(InputError, match=r"--out '.*cases.csv' must end in .json"):
        check_json_output(data, True, option="--out")
    with pytest.raises(OutputExistsError):
        check_json_output(existing, False)
    assert check_json_output(existing, True) == existing
    # an input is refused by name even with overwrite (a robustness JSON given as its own --out)
    with pytest.raises(InputError, match=r"is one of the input JSON files \('.*old.json'\); choose another"):
        check_json_output(existing, True, [existing], inputs_named="the input JSON files")


@pytest.mark.parametrize("text, seeds", [("0,1,2", [0, 1, 2]), (" 2, 0 ,2,", [2, 0]), ("-1", [-1])])
def test_seeds_are_whole_numbers_each_once_in_order(text, seeds):
    assert seed_list(text) == seeds


@pytest.mark.parametrize("text, words", [("x", "--seeds 'x': expected whole numbers separated by commas, such as 0,1"),
                                         (",", "--seeds names none")])
def test_a_seed_that_is_no_whole_number_is_one_line(text, words):
    with pytest.raises(InputError, match=words):
        seed_list(text, example="0,1")
