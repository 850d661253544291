"""emoverify.harness: claims as tests.

The claim schema and YAML loading (`schema`), expectations (`expectations`), evaluation of a claim and its
controls into a status (`evaluation`), and the pytest plugin (`plugin`). It may import `computations`
(the registry: computations are found by name at run time, never imported here), `lm.checkpoints`,
`paper`, `errors`, `provenance`; the plugin's import chain never reaches torch, which an `import-linter`
contract checks. It never imports `report`.
"""
