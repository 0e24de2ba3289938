"""The use cases, one module each: intake (accept, validate, submit), training (the BES job and its evaluation),
promotion (gate, then fan-out), model landing, deployment (lease, PATCH, verify, restore), fan-out, operations
(the operator's actions), views, reconcile. They are built once, by `shared.composition`."""
