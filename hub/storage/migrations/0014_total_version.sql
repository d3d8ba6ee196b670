-- A version per resource's stored total, moved by every batch that writes it:
-- a hub instance writes a total only over the version its actor was loaded
-- with. Offsets fence a partition as a whole; this catches an actor that stayed
-- resident from an earlier ownership of a partition while another instance
-- moved the total on (a rebalance that handed the partition away and back).
ALTER TABLE customer_resources ADD COLUMN IF NOT EXISTS total_version bigint NOT NULL DEFAULT 0;
