"""column_t against the FreeBSD ``column -t`` outputs shown in the iohyve reference."""

from __future__ import annotations

from sysadmd.simulator.column import column_t, display_width, split_fields


def test_list_example_of_the_reference_byte_for_byte() -> None:
    # iohyve-cli.md section 2: 0.7.3 "list" through "column -ts^".
    lines = [
        "Guest^VMM?^Running^rcboot?^Description\n",
        "bsdguest^YES^YES^NO^Fri Jan  8 20:15:33 CST 2016\n",
        "deb8^NO^NO^YES^My web server\n",
    ]
    assert "\n".join(column_t(lines, "^")) + "\n" == (
        "Guest     VMM?  Running  rcboot?  Description\n"
        "bsdguest  YES   YES      NO       Fri Jan  8 20:15:33 CST 2016\n"
        "deb8      NO    NO       YES      My web server\n"
    )


def test_info_example_splits_the_description_into_columns() -> None:
    # iohyve-cli.md section 4.1: 0.7.3 "info -d" through plain "column -t".
    lines = [
        "Name\tSize\tRAM\tCPU\tOS\tLoader\tDescription",
        "bsdguest\t-\t256M\t1\tdefault\tbhyveload\tFri Jan  8 20:15:33 CST 2016",
        "bsdguest/disk0\t8G\t256M\t1\tdefault\tbhyveload\tFri Jan  8 20:15:33 CST 2016",
    ]
    spilled = "Fri          Jan  8  20:15:33  CST  2016"
    assert column_t(lines) == [
        "Name            Size  RAM   CPU  OS       Loader     Description",
        f"bsdguest        -     256M  1    default  bhyveload  {spilled}",
        f"bsdguest/disk0  8G    256M  1    default  bhyveload  {spilled}",
    ]


def test_info_s_example_drops_the_leading_empty_field() -> None:
    # iohyve-cli.md section 4.1: 0.7.6+ "info -s"; disk rows start with an empty field.
    lines = [
        "Guest^Size^CPU^RAM^Pool^VMM?^Running^rcboot?",
        "bsdguest^-^1^512M^tank^NO^NO^NO",
        "^bsdguest/disk0^8G^-^-^tank^-^-^-",
    ]
    assert column_t(lines, "^") == [
        "Guest           Size  CPU  RAM   Pool  VMM?  Running  rcboot?",
        "bsdguest        -     1    512M  tank  NO    NO       NO",
        "bsdguest/disk0  8G    -    -     tank  -     -        -",
    ]


def test_disks_example_splits_the_title_line() -> None:
    # iohyve-cli.md section 4.1, issue #298: the title goes through column -t too.
    lines = ["Listing disks for debian...", "diskN\tSize", "disk0\t20G", "disk1\t40G"]
    assert column_t(lines) == [
        "Listing  disks  for  debian...",
        "diskN    Size",
        "disk0    20G",
        "disk1    40G",
    ]


def test_separator_runs_count_once_and_empty_fields_vanish() -> None:
    assert split_fields("^^a^^b^", "^") == ["a", "b"]
    assert column_t(["a^^b^c", "dd^e^^^f"], "^") == ["a   b  c", "dd  e  f"]


def test_spaces_are_kept_inside_fields_with_a_caret_separator() -> None:
    assert column_t(["x^two  spaces", "yy^z"], "^") == ["x   two  spaces", "yy  z"]


def test_blank_and_whitespace_lines_are_dropped() -> None:
    assert column_t(["a b", "", "   ", "\t\n", "cc d"]) == ["a   b", "cc  d"]


def test_last_field_is_not_padded_and_short_rows_keep_their_length() -> None:
    assert column_t(["a b c", "longer", "x y"]) == ["a       b  c", "longer", "x       y"]


def test_no_input_gives_no_output() -> None:
    assert column_t([]) == []


def test_line_of_only_separators_gives_an_empty_row() -> None:
    assert column_t(["a^b", "^^"], "^") == ["a  b", ""]


def test_widths_are_display_widths() -> None:
    assert display_width("abc") == 3
    assert display_width("\u65e5\u672c") == 4  # two wide CJK characters
    assert display_width("e\u0301") == 1  # combining accent takes no cell
    assert display_width("a\tb") == 2  # control characters take none
    assert column_t(["\u65e5 x", "ab y"]) == ["\u65e5  x", "ab  y"]
