"""What source adapters share, kept out of `imdd_build/sources/` so that package holds exactly one
module per source: the adapter interface (`base`), mask kinds (`masks`), adapter options
(`options`), the shared "root yielded no sample" check (`listing`), the MVTec-style tree walker
(`mvtec_tree`), and file-format readers (`vocxml`, `legacy_pickle*`, `pandas_pickle`)."""
