"""README.md's file map ("### Files") lists every source file, and names no
file that is gone: the map is how a newcomer finds where code lives, so a
new module without a row, or a row left behind by a move, fails here."""
import glob
import os
import re
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def file_map():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    start = text.index("### Files")
    end = text.index("\n## ", start)
    return text[start:end]


class FileMapTest(unittest.TestCase):
    def setUp(self):
        self.map = file_map()
        self.rows = [l for l in self.map.splitlines() if l.startswith("| `")]

    def row_of(self, folder):
        for row in self.rows:
            if row.startswith("| `%s/`" % folder):
                return row
        return None

    def test_every_source_file_is_in_the_map(self):
        missing = []
        for path in sorted(glob.glob(os.path.join(ROOT, "src", "**", "*.[ch]"), recursive=True)):
            rel = os.path.relpath(path, ROOT)
            if "`%s`" % rel in self.map:
                continue
            folder, name = os.path.split(rel)
            row = self.row_of(folder)
            if row is not None and re.search(r"`%s`" % re.escape(name[:-2]), row):
                continue
            missing.append(rel)
        self.assertEqual(missing, [], "files without a row in README.md's file map")

    def test_every_lua_script_is_covered(self):
        self.assertIn("`src/store/lua/*.lua`", self.map)
        self.assertTrue(glob.glob(os.path.join(ROOT, "src", "store", "lua", "*.lua")))

    def test_every_path_in_the_map_exists(self):
        gone = [p for p in re.findall(r"`((?:src|include|tests|tools|scripts|config|cmake)/[^`*]*)`",
                                      self.map)
                if not os.path.exists(os.path.join(ROOT, p))]
        self.assertEqual(gone, [], "rows naming files that are gone")

    def test_core_and_lib_names_are_real_modules(self):
        for folder in ("src/core", "src/lib"):
            row = self.row_of(folder)
            self.assertIsNotNone(row, folder)
            names = re.findall(r"`([a-z_]+)`", row)
            for n in names:
                self.assertTrue(os.path.exists(os.path.join(ROOT, folder, n + ".c")),
                                "%s names %s, which is not %s/%s.c" % (folder, n, folder, n))


if __name__ == "__main__":
    unittest.main()
