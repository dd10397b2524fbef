"""Prints the object tree of a torch.save checkpoint with CPython's own unpickler.

Every class is replaced by an empty stand-in (nothing from the file runs), tensors by their
storage type and shape; used by test/export-yolov5.test.ts to compare yolo5's Python YOLOv5
export with a checkpoint the reference wrote. Usage: python3 scripts/pickle-tree.py FILE.pt
"""
import collections
import pickle
import sys
import zipfile


class Stub:
    def __setstate__(self, state):
        self.__dict__["_state"] = state


CLASSES = {}


def stand_in(module, name):
    key = f"{module}.{name}"
    if key not in CLASSES:
        CLASSES[key] = type(name, (Stub,), {"qualname": key})
    return CLASSES[key]


class Reader(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module in ("__builtin__", "builtins") and name == "set":
            return set
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, stride, grad, hooks, *rest: ("tensor", storage, tuple(size))
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return lambda tensor, grad, hooks, *rest: ("parameter", tensor, grad)
        return stand_in(module, name)

    def persistent_load(self, pid):
        return pid[1].qualname if hasattr(pid[1], "qualname") else str(pid[1])


SEEN = {}


def show(value, indent, name, out):
    if isinstance(value, Stub):
        # Objects by first appearance: a module used twice (the shared activation) shows one number.
        number = SEEN.setdefault(id(value), len(SEEN))
        out.append(f"{' ' * indent}{name}: {type(value).qualname} #{number}")
        if number < len(SEEN) - 1:
            return
        for key, item in value.__dict__["_state"].items():
            if key == "_modules":
                for child, module in item.items():
                    show(module, indent + 2, child, out)
            else:
                show(item, indent + 2, "." + key, out)
    else:
        text = repr(value if not isinstance(value, float) else float(value))
        out.append(f"{' ' * indent}{name}: {type(value).__name__} {text[:200]}")


def main(path):
    archive = zipfile.ZipFile(path)
    pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
    top = Reader(archive.open(pkl)).load()
    out = []
    for key, value in top.items():
        show(value, 0, key, out)
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
