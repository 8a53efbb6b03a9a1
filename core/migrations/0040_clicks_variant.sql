-- The smart-link variant a click was sent to (index into the link's `variants`), -1 when the link had
-- none or a rule picked the destination. Clicks stored before it read -1.
ALTER TABLE {db}.clicks ADD COLUMN variant Int16 DEFAULT -1;
