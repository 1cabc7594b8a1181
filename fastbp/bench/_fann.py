"""The FANN peer: the C library FANN (float build) through ctypes, online (batch 1)
``fann_train_epoch`` after ``fann_shuffle_train_data``. Listed in
:data:`fastbp.bench.peers.PEERS`."""

import ctypes
import ctypes.util
import os
import tempfile

import numpy as np

from fastbp.bench._base import Peer, Unavailable


class _Connection(ctypes.Structure):
    _fields_ = [
        ("from_neuron", ctypes.c_uint),
        ("to_neuron", ctypes.c_uint),
        ("weight", ctypes.c_float),
    ]


_FILL = ctypes.CFUNCTYPE(
    None,
    ctypes.c_uint,
    ctypes.c_uint,
    ctypes.c_uint,
    ctypes.POINTER(ctypes.c_float),
    ctypes.POINTER(ctypes.c_float),
)
# enum fann_activationfunc_enum; LINEAR_PIECE_RECT (ReLU) only exists from FANN 2.3
_FANN_ACT = {
    "linear": 0,
    "sigmoid": 3,
    "tanh": 5,
    "linear_piece": 12,
    "linear_piece_rect": 18,
}
_FANN_LIB = None


def _fann():
    """The float build of FANN (fann_type = float) as a ctypes library."""
    global _FANN_LIB
    if _FANN_LIB is not None:
        return _FANN_LIB
    names = ["libfloatfann.so.2", "libfloatfann.so", "libfann.so.2", "libfann.so"]
    for found in (
        ctypes.util.find_library("floatfann"),
        ctypes.util.find_library("fann"),
    ):
        if found:
            names.insert(0, found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        raise Unavailable(
            "FANN's C library was not found (Debian: apt-get install libfann-dev)"
        )
    P, U, F = ctypes.c_void_p, ctypes.c_uint, ctypes.c_float
    sigs = {
        "fann_create_standard_array": (P, [U, ctypes.POINTER(U)]),
        "fann_destroy": (None, [P]),
        "fann_set_activation_function_hidden": (None, [P, ctypes.c_int]),
        "fann_set_activation_function_output": (None, [P, ctypes.c_int]),
        "fann_set_activation_steepness_hidden": (None, [P, F]),
        "fann_set_activation_steepness_output": (None, [P, F]),
        "fann_set_training_algorithm": (None, [P, ctypes.c_int]),
        "fann_set_train_error_function": (None, [P, ctypes.c_int]),
        "fann_set_learning_rate": (None, [P, F]),
        "fann_set_learning_momentum": (None, [P, F]),
        "fann_get_total_connections": (U, [P]),
        "fann_get_connection_array": (None, [P, ctypes.POINTER(_Connection)]),
        "fann_set_weight_array": (None, [P, ctypes.POINTER(_Connection), U]),
        "fann_create_train_from_callback": (P, [U, U, U, _FILL]),
        "fann_shuffle_train_data": (None, [P]),
        "fann_train_epoch": (F, [P, P]),
        "fann_destroy_train": (None, [P]),
        "fann_run": (ctypes.POINTER(F), [P, ctypes.POINTER(F)]),
        "fann_save": (ctypes.c_int, [P, ctypes.c_char_p]),
        "fann_create_from_file": (P, [ctypes.c_char_p]),
    }
    for fname, (restype, argtypes) in sigs.items():
        fn = getattr(lib, fname)
        fn.restype, fn.argtypes = restype, argtypes
    lib.has_relu = hasattr(lib, "fann_create_train_array")  # a 2.3 symbol
    _FANN_LIB = lib
    return lib


class Fann(Peer):
    name = "fann"

    @staticmethod
    def available():
        lib = _fann()
        return "2.3+" if lib.has_relu else "2.2"

    def unsupported(self, problem, batch):
        if batch != 1:
            return "FANN trains online (batch 1) only"
        if problem.dtype != "float32":
            return "FANN's fann_type is float (float32 only)"
        return None

    def setup(self, problem, batch, threads):
        lib, p = _fann(), problem
        self.shuffle = p.shuffle
        notes = ["single-threaded"]
        hidden = p.hidden
        if hidden == "relu" and not lib.has_relu:
            hidden = "linear_piece"
            notes.append(
                "relu -> FANN_LINEAR_PIECE (clipped to [0, 1]; FANN 2.2 has no relu)"
            )
        elif hidden == "relu":
            hidden = "linear_piece_rect"
        output = p.output
        if output == "softmax":
            output = "sigmoid"
            notes.append("softmax+cross-entropy -> sigmoid+mse (FANN has no softmax)")
        elif p.loss != "mse":
            notes.append(f"{p.loss} -> mse")
        self.exact = len(notes) == 1
        self.notes = "; ".join(notes)
        sizes = (ctypes.c_uint * len(p.sizes))(*p.sizes)
        self.ann = lib.fann_create_standard_array(len(p.sizes), sizes)
        lib.fann_set_activation_function_hidden(self.ann, _FANN_ACT[hidden])
        lib.fann_set_activation_function_output(self.ann, _FANN_ACT[output])
        # FANN computes s(steepness * z) with sigmoid(x) = 1 / (1 + exp(-2x)):
        # steepness 0.5 is the logistic sigmoid, 1.0 keeps the linear ones as they are
        lib.fann_set_activation_steepness_hidden(
            self.ann, 0.5 if hidden == "sigmoid" else 1.0
        )
        lib.fann_set_activation_steepness_output(
            self.ann, 0.5 if output == "sigmoid" else 1.0
        )
        self._set_weights(lib, p)
        lib.fann_set_training_algorithm(self.ann, 0)  # FANN_TRAIN_INCREMENTAL
        lib.fann_set_train_error_function(self.ann, 0)  # FANN_ERRORFUNC_LINEAR (mse)
        lib.fann_set_learning_rate(self.ann, p.lr)
        lib.fann_set_learning_momentum(self.ann, 0.0)
        X, T = p.X, p.T

        def fill(i, n_in, n_out, inp, out):
            ctypes.memmove(inp, X[i].ctypes.data, 4 * n_in)
            ctypes.memmove(out, T[i].ctypes.data, 4 * n_out)

        self.data = lib.fann_create_train_from_callback(
            X.shape[0], X.shape[1], T.shape[1], _FILL(fill)
        )
        self.lib, self.n_out = lib, p.sizes[-1]

    def _set_weights(self, lib, p):
        """FANN numbers neurons layer by layer, each layer ending in its bias neuron;
        a neuron's connections come from every neuron of the layer before."""
        n = lib.fann_get_total_connections(self.ann)
        conns = (_Connection * n)()
        lib.fann_get_connection_array(self.ann, conns)
        c = np.ctypeslib.as_array(conns)
        start = np.cumsum([0] + [k + 1 for k in p.sizes])  # first neuron of each layer
        layer = np.searchsorted(start, c["to_neuron"], side="right") - 1  # l >= 1
        for l in range(1, len(p.sizes)):
            sel = layer == l
            j = c["to_neuron"][sel] - start[l]
            i = c["from_neuron"][sel] - start[l - 1]
            is_bias = i == p.sizes[l - 1]
            W, b = p.Ws[l - 1], p.bs[l - 1]
            c["weight"][sel] = np.where(
                is_bias, b[j], W[j, np.minimum(i, W.shape[1] - 1)]
            )
        # fann_set_weight_array searches every connection for each one it sets
        # (quadratic: 40 s for M), so the weights go through FANN's own file format:
        # save the net, rewrite its connections line (same order), load it back.
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "net.fann").encode()
            if lib.fann_save(self.ann, path) != 0:
                raise OSError("fann_save failed")
            with open(path) as fh:
                lines = fh.read().splitlines()
            head = "connections (connected_to_neuron, weight)="
            k = next(k for k, line in enumerate(lines) if line.startswith(head))
            lines[k] = head + " ".join(
                f"({f}, {w:.9e})"
                for f, w in zip(
                    c["from_neuron"].tolist(), c["weight"].tolist(), strict=True
                )
            )
            with open(path, "w") as fh:
                fh.write("\n".join(lines) + "\n")
            lib.fann_destroy(self.ann)
            self.ann = lib.fann_create_from_file(path)
        if not self.ann:
            raise OSError("fann_create_from_file failed")

    def predict_one(self, x):
        """Outputs of the FANN net for one sample (to check the weight copy)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = self.lib.fann_run(
            self.ann, x.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        )
        return np.ctypeslib.as_array(out, shape=(self.n_out,)).copy()

    def run_epoch(self):
        if self.shuffle:
            self.lib.fann_shuffle_train_data(self.data)
        self.lib.fann_train_epoch(self.ann, self.data)

    def close(self):
        if getattr(self, "data", None):
            self.lib.fann_destroy_train(self.data)
            self.data = None
        if getattr(self, "ann", None):
            self.lib.fann_destroy(self.ann)
            self.ann = None

    def __del__(self):
        self.close()
