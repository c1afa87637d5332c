"""Reference implementations: the single source of truth for every graded function.

One module per chapter, named after the chapter slug without its number
(``01-similarity`` -> ``similarity``). `python -m autograder release` copies each
function's body into the instructor notebook's answer cell; the autograder compares
students against these functions.
"""
