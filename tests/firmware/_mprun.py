# Runs one firmware test module under MicroPython and prints one tagged result per test.
# Test order is the source order, read here because MicroPython's module dict is unordered.
import io
import sys

TAG = "@@MPRESULT "


def _test_names(path):
    names = []
    with open(path) as f:
        for line in f:
            if line.startswith("def test_"):
                names.append(line[4 : line.index("(")])
    return names


def main():
    modname = sys.argv[1]
    mod = __import__(modname)
    path = None
    for d in sys.path:
        try:
            open(d + "/" + modname + ".py").close()
            path = d + "/" + modname + ".py"
            break
        except OSError:
            pass
    for name in _test_names(path):
        try:
            getattr(mod, name)()
            print(TAG + name + " ok")
        except Exception as e:
            buf = io.StringIO()
            sys.print_exception(e, buf)
            print(TAG + name + " fail")
            print(buf.getvalue())


main()
