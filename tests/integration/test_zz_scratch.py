import time, os
from test_pool import Pool, assert_all_once
from test_ha import stop_all

def proc_stats(pid):
    st = open("/proc/%d/status" % pid).read()
    rss = int([l for l in st.splitlines() if l.startswith("VmRSS")][0].split()[1])
    thr = int([l for l in st.splitlines() if l.startswith("Threads")][0].split()[1])
    return rss, thr

def test_scratch_thirty(stack):
    pool = Pool(stack, "pl_s30", 30)
    t = pool.replica("r1").start()
    t0 = time.monotonic()
    pool.wait_held({"r1"}, timeout=120)
    print("  all 30 held after %.1f s" % (time.monotonic() - t0))
    time.sleep(3)
    print("  rss kB, threads: %s" % (proc_stats(t.pid),))
    for i in range(30):
        pool.insert(i, 0, 100)
    for i in range(30):
        assert_all_once(pool, i, 100)
    print("  rss kB, threads after: %s" % (proc_stats(t.pid),))
    stop_all([t])
