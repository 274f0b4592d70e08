"""Every plan kept: the realised sends of a written plan, strategy by
strategy and scenario by scenario (plan_delivery.py), against the real
binary and a real Redis in virtual time, in notifd's default configuration
but for fast.pacing. scripts/plan_delivery.sh prints the same table."""
import unittest

import plan_delivery as pd
from harness import Notifd, Redis


class PlanDeliveryTest(unittest.TestCase):
    def test_every_strategy_keeps_the_plan_in_every_scenario(self):
        for strategy in pd.STRATEGIES:
            for scenario in pd.SCENARIOS:
                with self.subTest(strategy=strategy, scenario=scenario.name):
                    redis = Redis().start()
                    self.addCleanup(redis.close)
                    # The default strategy is tested as shipped: no override.
                    fast = {} if strategy == "quality" else {"pacing": strategy}
                    notifd = Notifd(redis.port, {"fast": fast, "log_level": "warn"})
                    self.addCleanup(notifd.close)
                    notifd.start()
                    counts, halves = pd.run(notifd, redis, scenario)
                    summary, over_cap = pd.summarise(scenario, counts, halves)
                    self.assertEqual(pd.problems(scenario, summary, over_cap, counts, halves),
                                     [], pd.format_rows(strategy, scenario, summary))
                    notifd.close()
                    redis.close()


if __name__ == "__main__":
    unittest.main()
