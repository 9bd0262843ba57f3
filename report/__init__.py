"""fervid.report: what people read of a job — terminal tables, figures, the HTML report and exports — built from
the query functions of :mod:`fervid.db`."""
