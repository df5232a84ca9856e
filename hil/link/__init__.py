"""The ground side of the space link: a ground station (:mod:`hil.link.ground`), the
``hil link`` console (:mod:`hil.link.console`) and the CFDP sender (:mod:`hil.link.cfdp_ground`)."""
