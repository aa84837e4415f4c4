"""Tables of the Visual Turing Test (studies, arms, cases, readers, answers).

Filled in by the reader-study work; migration ``0002_studies`` creates them.
"""
