// JDBC (pgjdbc) against a running slicedb. Run with the single-file launcher:
//   java -cp /usr/share/java/postgresql.jar JdbcCheck.java HOST PORT
// Exits non-zero with a message on the first failure.
import java.math.BigDecimal;
import java.sql.*;

public class JdbcCheck {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/slicedb?user=postgres&prepareThreshold=1";
        try (Connection conn = DriverManager.getConnection(url)) {
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TABLE jdbc_items (id bigint PRIMARY KEY, name varchar(20) NOT NULL, price numeric(10,2), added date)");
            }
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO jdbc_items VALUES (?, ?, ?, ?)")) {
                for (int i = 1; i <= 30; i++) {
                    ps.setLong(1, i);
                    ps.setString(2, "item" + i);
                    ps.setBigDecimal(3, new BigDecimal(i + ".50"));
                    ps.setDate(4, Date.valueOf("2024-05-" + String.format("%02d", i)));
                    check(ps.executeUpdate() == 1, "insert count");
                }
            }
            try (PreparedStatement ps = conn.prepareStatement("SELECT name, price, added FROM jdbc_items WHERE id = ?")) {
                for (long id : new long[] {3, 7, 30}) {
                    ps.setLong(1, id);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "row " + id);
                        check(rs.getString(1).equals("item" + id), "name " + rs.getString(1));
                        check(rs.getBigDecimal(2).compareTo(new BigDecimal(id + ".50")) == 0, "price " + rs.getBigDecimal(2));
                        check(rs.getDate(3).toString().equals(String.format("2024-05-%02d", id)), "date " + rs.getDate(3));
                        check(!rs.next(), "one row");
                    }
                }
            }
            try (PreparedStatement ps = conn.prepareStatement("UPDATE jdbc_items SET price = price + ? WHERE id <= ?")) {
                ps.setBigDecimal(1, new BigDecimal("1.00"));
                ps.setLong(2, 10);
                check(ps.executeUpdate() == 10, "update count");
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*), sum(price) FROM jdbc_items")) {
                check(rs.next(), "aggregate row");
                check(rs.getLong(1) == 30, "count " + rs.getLong(1));
                check(rs.getBigDecimal(2).compareTo(new BigDecimal("490.00")) == 0, "sum " + rs.getBigDecimal(2));
            }
            try (Statement st = conn.createStatement()) {
                st.executeUpdate("INSERT INTO jdbc_items VALUES (1, 'dup', NULL, NULL)");
                throw new AssertionError("duplicate accepted");
            } catch (SQLException e) {
                check("23505".equals(e.getSQLState()), "sqlstate " + e.getSQLState());
            }
            DatabaseMetaData md = conn.getMetaData();
            check(md.getDatabaseProductName().equals("PostgreSQL"), "product " + md.getDatabaseProductName());
        }
        System.out.println("jdbc: ok");
    }
}
