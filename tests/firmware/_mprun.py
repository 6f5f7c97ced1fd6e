# Runs one firmware test module under MicroPython and prints one tagged result per test,
# with the test's own run time in microseconds (the plugin reports it on the test's item).
# Test order is the source order, read here because MicroPython's module dict is unordered;
# on the qemu board the modules are .mpy only, so the plugin passes the names after the module's.
import io
import sys
import time

TAG = "@@MPRESULT "


def _test_names(path):
    names = []
    with open(path) as f:
        for line in f:
            if line.startswith("def test_"):
                names.append(line[4 : line.index("(")])
    return names


def _source(modname):
    for d in sys.path:
        try:
            open(d + "/" + modname + ".py").close()
            return d + "/" + modname + ".py"
        except OSError:
            pass
    return None


def main():
    modname = sys.argv[1]
    mod = __import__(modname)
    names = sys.argv[2:] if len(sys.argv) > 2 else _test_names(_source(modname))
    for name in names:
        t0 = time.ticks_us()
        try:
            getattr(mod, name)()
            status = "ok"
            detail = ""
        except Exception as e:
            buf = io.StringIO()
            sys.print_exception(e, buf)
            status = "fail"
            detail = buf.getvalue()
        us = time.ticks_diff(time.ticks_us(), t0)
        print(TAG + name + " " + status + " " + str(us))
        if detail:
            print(detail)


main()
