/*
 * The masker's scans that Python's `re` makes slow, each in one pass.
 *
 * `split(buffer)` finds the terminal escape sequences of `buffer` exactly
 * as the regular expression `_SEQUENCE` of escapes.py does when it splits
 * the buffer (leftmost sequences first, none overlapping), and returns
 * four objects:
 *
 *   - the bytes outside the sequences, joined (the view);
 *   - the original position of each stretch of bytes between sequences,
 *     the first one before the first sequence;
 *   - the position in the view where each stretch starts;
 *   - the length of each stretch.
 *
 * The last three are arrays of native 64-bit integers, as bytes.
 *
 * There is one stretch more than there are sequences, and stretches may be
 * empty, as in the list that `re.split` returns.
 *
 * `bisect_right(positions, value)` is `bisect.bisect_right` on such an
 * array, without making an int object of each item it compares.
 *
 * `full_lines(text, start)` returns what `runs._FULL_LINE.finditer(text,
 * start)` finds, as (line start, break start, break end) tuples: each line
 * of at least 48 base64 characters after a newline, followed by a line
 * break and another base64 character.
 *
 * escapes.py and runs.py fall back to the regular expressions when this
 * module is not built, and tests/test_scan_c.py checks that both give the
 * same results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define ESC 0x1b
#define MAX_PARAMETERS 64
#define MAX_INTERMEDIATES 16
#define MAX_STRING 4096
#define MIN_WRAPPED_LINE 48

static int in_range(unsigned char c, unsigned char low, unsigned char high)
{
    return c >= low && c <= high;
}

/* The end of the sequence whose ESC is at `start`, or -1 if none starts there. */
static Py_ssize_t sequence_end(const unsigned char *s, Py_ssize_t n, Py_ssize_t start)
{
    Py_ssize_t i = start + 1;
    Py_ssize_t count = 0;

    if (i >= n)
        return -1;
    unsigned char kind = s[i++];
    switch (kind) {
    case '[': /* CSI: parameters, intermediates, final byte */
        while (i < n && in_range(s[i], 0x30, 0x3f)) {
            if (++count > MAX_PARAMETERS)
                return -1;
            i++;
        }
        count = 0;
        while (i < n && in_range(s[i], 0x20, 0x2f)) {
            if (++count > MAX_INTERMEDIATES)
                return -1;
            i++;
        }
        return i < n && in_range(s[i], 0x40, 0x7e) ? i + 1 : -1;
    case ']': /* OSC: text ended by BEL or ESC backslash */
        while (i < n && s[i] != 0x07 && s[i] != ESC) {
            if (++count > MAX_STRING)
                return -1;
            i++;
        }
        if (i < n && s[i] == 0x07)
            return i + 1;
        return i + 1 < n && s[i] == ESC && s[i + 1] == '\\' ? i + 2 : -1;
    case 'P': case 'X': case '^': case '_': /* DCS, SOS, PM, APC: text ended by ESC backslash */
        while (i < n && s[i] != ESC) {
            if (++count > MAX_STRING)
                return -1;
            i++;
        }
        return i + 1 < n && s[i + 1] == '\\' ? i + 2 : -1;
    default:
        break;
    }
    if (in_range(kind, 0x20, 0x2f)) { /* intermediates, then a final byte */
        count = 1;
        while (i < n && in_range(s[i], 0x20, 0x2f)) {
            if (++count > MAX_INTERMEDIATES)
                return -1;
            i++;
        }
        return i < n && in_range(s[i], 0x30, 0x7e) ? i + 1 : -1;
    }
    /* Two-byte sequences. The cases above took '[', ']', 'P', 'X', '^' and '_'. */
    return in_range(kind, 0x30, 0x7e) ? i : -1;
}

/* The start of the bytes object `bytes`, as 64-bit integers. */
static int64_t *integers(PyObject *bytes)
{
    return (int64_t *)(void *)PyBytes_AS_STRING(bytes);
}

static PyObject *split(PyObject *module, PyObject *argument)
{
    Py_buffer buffer;
    PyObject *view = NULL, *starts = NULL, *view_starts = NULL, *lengths = NULL, *result = NULL;
    Py_ssize_t written = 0, text_start = 0, position = 0, count = 0;

    (void)module;
    if (PyObject_GetBuffer(argument, &buffer, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *s = buffer.buf;
    Py_ssize_t n = buffer.len;

    /* There are at most as many sequences as ESC bytes, so the arrays are
     * allocated once at that size, written in place and shrunk at the end.
     * Another thread may change a mutable buffer (a bytearray) while the GIL
     * is released, and then the second pass could find more sequences than
     * the first counted. So the GIL is released only for a bytes object, and
     * the second pass checks the count anyway. */
    PyThreadState *released = NULL;
    if (PyBytes_CheckExact(argument))
        released = PyEval_SaveThread();
    Py_ssize_t escapes = 0;
    for (const unsigned char *at = s; (at = memchr(at, ESC, (size_t)(s + n - at))) != NULL; at++)
        escapes++;
    if (released != NULL) {
        PyEval_RestoreThread(released);
        released = NULL;
    }
    Py_ssize_t array_size = (escapes + 1) * (Py_ssize_t)sizeof(int64_t);
    view = PyBytes_FromStringAndSize(NULL, n);
    starts = PyBytes_FromStringAndSize(NULL, array_size);
    view_starts = PyBytes_FromStringAndSize(NULL, array_size);
    lengths = PyBytes_FromStringAndSize(NULL, array_size);
    if (view == NULL || starts == NULL || view_starts == NULL || lengths == NULL)
        goto done;
    char *out = PyBytes_AS_STRING(view);
    int64_t *starts_out = integers(starts), *view_starts_out = integers(view_starts), *lengths_out = integers(lengths);
    int overflow = 0;
    if (PyBytes_CheckExact(argument))
        released = PyEval_SaveThread();

    while (position < n) {
        const unsigned char *found = memchr(s + position, ESC, (size_t)(n - position));
        if (found == NULL)
            break;
        Py_ssize_t start = found - s;
        Py_ssize_t end = sequence_end(s, n, start);
        if (end < 0) {
            position = start + 1;
            continue;
        }
        if (count >= escapes) {
            overflow = 1;
            break;
        }
        starts_out[count] = text_start;
        view_starts_out[count] = written;
        lengths_out[count] = start - text_start;
        count++;
        memcpy(out + written, s + text_start, (size_t)(start - text_start));
        written += start - text_start;
        text_start = position = end;
    }
    starts_out[count] = text_start;
    view_starts_out[count] = written;
    lengths_out[count] = n - text_start;
    count++;
    memcpy(out + written, s + text_start, (size_t)(n - text_start));
    written += n - text_start;
    if (released != NULL)
        PyEval_RestoreThread(released);
    if (overflow) {
        PyErr_SetString(PyExc_BufferError, "split: the buffer changed while it was being split");
        goto done;
    }

    array_size = count * (Py_ssize_t)sizeof(int64_t);
    if (_PyBytes_Resize(&view, written) < 0 || _PyBytes_Resize(&starts, array_size) < 0 ||
        _PyBytes_Resize(&view_starts, array_size) < 0 || _PyBytes_Resize(&lengths, array_size) < 0)
        goto done;
    result = PyTuple_Pack(4, view, starts, view_starts, lengths);

done:
    Py_XDECREF(view);
    Py_XDECREF(starts);
    Py_XDECREF(view_starts);
    Py_XDECREF(lengths);
    PyBuffer_Release(&buffer);
    return result;
}

/* The bytes of standard and URL-safe base64, set by PyInit__scan. */
static unsigned char wrap_characters[256];

static int is_wrap_character(unsigned char c)
{
    return wrap_characters[c];
}

static PyObject *full_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buffer;
    Py_ssize_t start;
    PyObject *result = NULL;

    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "full_lines(text, start) takes exactly 2 arguments");
        return NULL;
    }
    start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &buffer, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *s = buffer.buf;
    Py_ssize_t n = buffer.len;
    Py_ssize_t position = start < 0 ? 0 : start;

    result = PyList_New(0);
    if (result == NULL)
        goto done;
    while (position < n) {
        const unsigned char *found = memchr(s + position, '\n', (size_t)(n - position));
        if (found == NULL)
            break;
        Py_ssize_t line = found - s + 1;
        Py_ssize_t end = line;
        while (end < n && is_wrap_character(s[end]))
            end++;
        position = end > line ? end : line;
        if (end - line < MIN_WRAPPED_LINE)
            continue;
        Py_ssize_t break_end;
        if (end + 2 < n && s[end] == '\r' && s[end + 1] == '\n' && is_wrap_character(s[end + 2]))
            break_end = end + 2;
        else if (end + 1 < n && s[end] == '\n' && is_wrap_character(s[end + 1]))
            break_end = end + 1;
        else
            continue;
        PyObject *item = Py_BuildValue("(nnn)", line, end, break_end);
        if (item == NULL || PyList_Append(result, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(result);
            goto done;
        }
        Py_DECREF(item);
    }

done:
    PyBuffer_Release(&buffer);
    return result;
}

static PyObject *bisect_right(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buffer;
    int64_t value;

    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "bisect_right(positions, value) takes exactly 2 arguments");
        return NULL;
    }
    value = PyLong_AsLongLong(args[1]);
    if (value == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &buffer, PyBUF_SIMPLE) < 0)
        return NULL;
    if (buffer.len % (Py_ssize_t)sizeof(int64_t) != 0) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "positions must be an array of 64-bit integers, a multiple of 8 bytes long");
        return NULL;
    }
    const int64_t *items = buffer.buf;
    Py_ssize_t low = 0, high = buffer.len / (Py_ssize_t)sizeof(int64_t);
    while (low < high) {
        Py_ssize_t middle = low + (high - low) / 2;
        if (value < items[middle])
            high = middle;
        else
            low = middle + 1;
    }
    PyBuffer_Release(&buffer);
    return PyLong_FromSsize_t(low);
}

static PyMethodDef methods[] = {
    {"split", split, METH_O,
     "split(buffer) -> (view, starts, view_starts, lengths): the bytes outside escape sequences, and where "
     "each stretch of them starts in `buffer` and in the view and how long it is, as native 64-bit integers."},
    {"full_lines", (PyCFunction)(void (*)(void))full_lines, METH_FASTCALL,
     "full_lines(text, start) -> [(line start, break start, break end)]: the lines of at least 48 base64 "
     "characters after a newline at or after `start` that a joinable line break ends."},
    {"bisect_right", (PyCFunction)(void (*)(void))bisect_right, METH_FASTCALL,
     "bisect_right(positions, value) -> index: `bisect.bisect_right` on sorted native 64-bit integers."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "secretd.daemon.masking._scan",
    .m_doc = "The masker's scans that Python's re makes slow (see escapes.py and runs.py).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC PyInit__scan(void)
{
    for (int c = 0; c < 256; c++)
        wrap_characters[c] = in_range((unsigned char)c, 'A', 'Z') || in_range((unsigned char)c, 'a', 'z') ||
                             in_range((unsigned char)c, '0', '9') || c == '+' || c == '/' || c == '-' || c == '_';
    return PyModuleDef_Init(&module);
}
