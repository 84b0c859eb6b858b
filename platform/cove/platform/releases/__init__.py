"""A BU's release: which model version serves its developers (stable), which one a share of
them tries (canary), and the promote / rollback steps between them."""
