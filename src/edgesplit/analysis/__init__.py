"""From a store to a conclusion: paired comparisons and summaries (:mod:`.statistics`),
their tables (:mod:`.tables`) and figures (:mod:`.plots`), one game round by round
(:mod:`.trace`), and one topology of a store as a scenario file (:mod:`.export`)."""
