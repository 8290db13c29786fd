# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The optional compiled part of the sanitizer's walk (a pure-Python walk does the same).

``Walker.children`` replaces the children loop of ``Sanitizer._element``. It
walks libxml2's nodes directly (through lxml's public C API) and handles in C
only the elements that the Python walk would leave exactly as they are: an
allowed SVG element whose attribute names are allowed for it, whose values
need no check or were found clean before (the sanitizer's own cache), and
whose text is allowed where it stands. For those it does what the Python walk
does (count the budget, set a value the cache says is rewritten, remember an
``id`` and a ``<use>``'s reference, walk the children) and nothing else; it creates a Python object for such an
element only when it has an ``id``. Every other node (a disallowed element,
an attribute to check, a comment, stray text) goes to the Python walk, one
child at a time (``child`` and ``tail`` callbacks), so every decision, report
entry and change is made by the same Python code as without this module. When
in doubt (an unusual byte, a value over a length limit) this module hands the
node to Python: it may only ever decline work, never decide differently.

``tests/sanitize/test_sanitize_accelerated.py`` checks, with hypothesis, that
outputs and reports are identical with and without it.
"""

from cpython.unicode cimport PyUnicode_AsUTF8
from libc.stdint cimport uintptr_t
from libc.string cimport strcmp
from lxml.includes cimport tree
from lxml.includes.tree cimport xmlAttr, xmlNode

cimport lxml.includes.etreepublic as cetree
from lxml.includes.etreepublic cimport _Document, _Element, elementFactory

cetree.import_lxml__etree()

ABI = 3
"""Bumped with every change of this interface; the Python side checks it."""

# Mirrors of the constants in _sanitizer.py (checked there at import).
PLAIN, PATH, HREF, PRESENTATION, CHECKED = 0, 1, 2, 3, 4
USE = 2

cdef enum:
    _PLAIN = 0
    _PATH = 1
    _HREF = 2
    _PRESENTATION = 3
    _CHECKED = 4
    _USE = 2
    _SLOTS = 512  # names remembered by address (a power of two)

cdef const char* SVG_NS = b"http://www.w3.org/2000/svg"
cdef const char* XLINK_NS = b"http://www.w3.org/1999/xlink"


cdef class Info:
    """What the walk needs to know about one allowed element name."""

    cdef str name
    cdef dict kinds
    cdef bint text_ok
    cdef bint text_only
    cdef int special

    def __init__(self, str name, dict kinds, bint text_ok, bint text_only, int special):
        self.name = name
        self.kinds = kinds
        self.text_ok = text_ok
        self.text_only = text_only
        self.special = special


cdef class _State:
    """One call of ``Walker.children`` (its nested C recursion shares it)."""

    cdef object run
    cdef object budget
    cdef object scope_id
    cdef _Document doc
    cdef dict ids
    cdef list uses
    cdef long countdown
    cdef bint short

    cdef inline int sync_out(self) except -1:
        self.budget.countdown = self.countdown
        return 0

    cdef inline int sync_in(self) except -1:
        self.countdown = self.budget.countdown
        return 0


cdef inline bint _lxml_element(xmlNode* c) noexcept:
    # What lxml iterates over as children (``_isElement``).
    return (c.type == tree.XML_ELEMENT_NODE or c.type == tree.XML_COMMENT_NODE
            or c.type == tree.XML_ENTITY_REF_NODE or c.type == tree.XML_PI_NODE)


cdef inline bint _is_text(xmlNode* c) noexcept:
    return c.type == tree.XML_TEXT_NODE or c.type == tree.XML_CDATA_SECTION_NODE


cdef inline bint _blank(const unsigned char* s) noexcept:
    # ASCII blanks only: any other byte (even Unicode whitespace) goes to Python.
    while s[0] != 0:
        if s[0] != 32 and s[0] != 9 and s[0] != 10 and s[0] != 13:
            return False
        s += 1
    return True


cdef inline bint _tail_has_text(xmlNode* c) noexcept:
    """Whether text after ``c`` (its tail) may be more than ASCII blanks."""
    cdef xmlNode* t = c.next
    while t is not NULL and _is_text(t):
        if t.content is not NULL and not _blank(<const unsigned char*>t.content):
            return True
        t = t.next
    return False


cdef inline Py_ssize_t _length(const unsigned char* s) noexcept:
    cdef Py_ssize_t n = 0
    while s[n] != 0:
        n += 1
    return n


cdef inline bint _has_paren_or_backslash(const unsigned char* s) noexcept:
    while s[0] != 0:
        if s[0] == 40 or s[0] == 92:  # '(' or '\\'
            return True
        s += 1
    return False


cdef inline bint _plain_fragment(const unsigned char* s) noexcept:
    # ``#[A-Za-z0-9_-]+`` (``_PLAIN_FRAGMENT`` in _sanitizer.py).
    cdef unsigned char ch
    if s[0] != 35 or s[1] == 0:
        return False
    s += 1
    while s[0] != 0:
        ch = s[0]
        if not ((48 <= ch <= 57) or (65 <= ch <= 90) or (97 <= ch <= 122) or ch == 95
                or ch == 45):
            return False
        s += 1
    return True


cdef object _attribute(xmlNode* c, const char* name, const char* ns):
    """The value of ``c``'s attribute ``name`` in namespace ``ns`` (``NULL``: none), or ``None``.

    Only called for elements ``_quiet`` accepted: each attribute value is one
    text node (or none, for an empty value).
    """
    cdef xmlAttr* a = c.properties
    cdef xmlNode* t
    while a is not NULL:
        if strcmp(<const char*>a.name, name) == 0 and (
            (ns is NULL and a.ns is NULL)
            or (ns is not NULL and a.ns is not NULL and a.ns.href is not NULL
                and strcmp(<const char*>a.ns.href, ns) == 0)
        ):
            t = a.children
            if t is NULL:
                return ""
            return (<const char*>t.content).decode("utf-8")
        a = a.next
    return None


cdef class Walker:
    """The compiled children loop of one ``Sanitizer`` (its tables and callbacks)."""

    cdef dict elements
    cdef dict clean
    cdef object child
    cdef object tail
    cdef object splice
    cdef Py_ssize_t max_depth
    cdef Py_ssize_t max_attributes
    cdef Py_ssize_t attribute_limit
    cdef Py_ssize_t path_limit
    cdef bint plain_fragments
    # Element and attribute names by the address of libxml2's copy: the parser
    # interns names per document, so a document repeats a few addresses. An
    # address is only a hint (another document may reuse it for another name):
    # every hit is confirmed by comparing the text.
    cdef const char* _element_ptr[_SLOTS]
    cdef list _element_val  # (name, Info or None)
    cdef const char* _key_ptr[_SLOTS]
    cdef list _key_val  # the attribute name as a str

    def __init__(self, dict elements, dict clean, child, tail, splice, Py_ssize_t max_depth,
                 Py_ssize_t max_attributes, Py_ssize_t attribute_limit, Py_ssize_t path_limit,
                 bint plain_fragments):
        self.elements = elements
        self.clean = clean
        self.child = child
        self.tail = tail
        self.splice = splice
        self.max_depth = max_depth
        self.max_attributes = max_attributes
        self.attribute_limit = attribute_limit
        self.path_limit = path_limit
        self.plain_fragments = plain_fragments
        self._element_val = [None] * _SLOTS
        self._key_val = [None] * _SLOTS
        cdef int i
        for i in range(_SLOTS):
            self._element_ptr[i] = NULL
            self._key_ptr[i] = NULL

    cdef object _element_info(self, const char* name):
        """The Info for an SVG element name (``None``: not one this module handles)."""
        cdef size_t slot = (<uintptr_t>name >> 3) & (_SLOTS - 1)
        cdef tuple hit
        if self._element_ptr[slot] == name:
            hit = <tuple>self._element_val[slot]
            if strcmp(PyUnicode_AsUTF8(hit[0]), name) == 0:
                return hit[1]
        text = name.decode("utf-8")
        info = self.elements.get(text)
        self._element_ptr[slot] = name
        self._element_val[slot] = (text, info)
        return info

    cdef str _key(self, const char* name):
        """An attribute name without namespace, as a str (the key lxml gives it)."""
        cdef size_t slot = (<uintptr_t>name >> 3) & (_SLOTS - 1)
        cdef str hit
        if self._key_ptr[slot] == name:
            hit = <str>self._key_val[slot]
            if strcmp(PyUnicode_AsUTF8(hit), name) == 0:
                return hit
        hit = name.decode("utf-8")
        self._key_ptr[slot] = name
        self._key_val[slot] = hit
        return hit

    def children(self, run, _Element el not None, str name, bint text_ok, bint text_only,
                 scope_id, int depth):
        """Walk ``el``'s children (at ``depth``); return the changes to splice, or ``None``."""
        cdef _State s = _State()
        s.run = run
        s.budget = run.budget
        s.scope_id = scope_id
        s.doc = el._doc
        s.ids = run.ids
        s.uses = run.uses
        s.short = run.short_values
        s.sync_in()
        try:
            return self._children(s, el._c_node, el, name, text_ok, text_only, depth)
        finally:
            s.sync_out()

    cdef object _children(self, _State s, xmlNode* parent, object parent_el, str name,
                          bint text_ok, bint text_only, int depth):
        cdef xmlNode* c = parent.children
        cdef dict changes = None
        cdef object child_el
        cdef object result
        cdef Info info
        cdef list rewrites = []
        while c is not NULL:
            if not _lxml_element(c):
                c = c.next
                continue
            child_el = None
            info = None
            if not text_only and c.type == tree.XML_ELEMENT_NODE and depth <= self.max_depth:
                info = self._quiet(s, c, rewrites)
            if info is not None:
                self._keep(s, c, info, depth, rewrites)
            else:
                if parent_el is None:
                    parent_el = elementFactory(s.doc, parent)
                child_el = elementFactory(s.doc, c)
                s.sync_out()
                result = self.child(s.run, parent_el, child_el, name, text_ok, text_only,
                                    s.scope_id, depth)
                s.sync_in()
                if result is not None:
                    if changes is None:
                        changes = {}
                    changes[child_el] = result
            if not text_ok and _tail_has_text(c):
                if parent_el is None:
                    parent_el = elementFactory(s.doc, parent)
                if child_el is None:
                    child_el = elementFactory(s.doc, c)
                self.tail(s.run, parent_el, child_el)
            c = c.next
        return changes

    cdef int _keep(self, _State s, xmlNode* c, Info info, int depth, list rewrites) except -1:
        """Do what the Python walk does for an element that needs no change but the
        ``rewrites`` (attribute, value) remembered for its values."""
        cdef object el = None
        cdef object changes
        cdef object ident
        cdef object ref
        s.countdown -= 1  # Budget.tick()
        if s.countdown <= 0:
            s.sync_out()
            s.budget.check()
            s.sync_in()
        if rewrites:
            # What ``_attrs`` does with a remembered rewrite (``el.set``), before
            # the id and the reference are read, as there.
            el = elementFactory(s.doc, c)
            for key, value in rewrites:
                el.set(key, value)
            del rewrites[:]
        ident = _attribute(c, b"id", NULL)
        if ident is not None:
            if el is None:
                el = elementFactory(s.doc, c)
            s.ids.setdefault(ident, el)
        if info.special == _USE:
            ref = _attribute(c, b"href", NULL)
            s.uses.append(ref if ref is not None else _attribute(c, b"href", XLINK_NS))
        changes = self._children(s, c, el, info.name, info.text_ok, info.text_only, depth + 1)
        if changes:
            if el is None:
                el = elementFactory(s.doc, c)
            self.splice(el, changes)
        return 0

    cdef Info _quiet(self, _State s, xmlNode* c, list rewrites):
        """``c``'s Info when the Python walk would report nothing about ``c`` itself
        and change nothing but values it remembers rewritten (added to ``rewrites``;
        its children are walked separately); ``None`` otherwise (``rewrites`` empty)."""
        cdef object found
        cdef Info info
        cdef xmlAttr* a
        cdef xmlNode* t
        cdef Py_ssize_t count = 0
        cdef Py_ssize_t text_length = 0
        cdef bint text_seen = False
        cdef const unsigned char* value
        cdef object kind_obj
        cdef int kind
        cdef str key
        cdef str text
        cdef object known
        if c.ns is NULL or c.ns.href is NULL or strcmp(<const char*>c.ns.href, SVG_NS) != 0:
            return None
        found = self._element_info(<const char*>c.name)
        if found is None:
            return None
        info = <Info>found
        # Text before the first child: kept as it is when allowed here or blank.
        t = c.children
        while t is not NULL and _is_text(t):
            text_seen = True
            if t.content is not NULL:
                text_length += _length(<const unsigned char*>t.content)
                if not info.text_ok and not _blank(<const unsigned char*>t.content):
                    return None
            t = t.next
        if text_seen and text_length == 0:
            return None  # an empty text node: Python sets ``text = None``
        a = c.properties
        while a is not NULL:
            count += 1
            if count > self.max_attributes:
                del rewrites[:]
                return None
            t = a.children
            if t is NULL:
                value = <const unsigned char*>b""
            elif t.type != tree.XML_TEXT_NODE or t.next is not NULL or t.content is NULL:
                del rewrites[:]
                return None
            else:
                value = <const unsigned char*>t.content
            if a.ns is NULL:
                key = self._key(<const char*>a.name)
            elif a.ns.href is NULL:
                del rewrites[:]
                return None
            else:
                key = "{%s}%s" % ((<const char*>a.ns.href).decode("utf-8"),
                                  (<const char*>a.name).decode("utf-8"))
            kind_obj = info.kinds.get(key)
            if kind_obj is None:
                del rewrites[:]
                return None
            kind = kind_obj
            if kind == _PATH:
                if not s.short and _length(value) > self.path_limit:
                    del rewrites[:]
                    return None
            elif kind == _PLAIN or (kind == _PRESENTATION and not _has_paren_or_backslash(value)):
                if not s.short and _length(value) > self.attribute_limit:
                    del rewrites[:]
                    return None
            elif kind == _HREF and self.plain_fragments and _plain_fragment(value):
                pass
            else:
                text = (<const char*>value).decode("utf-8")
                known = self.clean.get((info.name, key, text))
                if known is None:
                    del rewrites[:]
                    return None
                if known != text:
                    rewrites.append((key, known))
            a = a.next
        return info
